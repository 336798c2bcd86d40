package kube_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/localcluster"
)

func TestRenderUpstreamController(t *testing.T) {
	const version = localcluster.AgentSandboxVersion
	dir, err := localcluster.ModuleDir(context.Background(), "sigs.k8s.io/agent-sandbox", version)
	assert.NilError(t, err)
	objs, err := kube.RenderController(dir, version)
	assert.NilError(t, err)

	assert.Check(t, is.Equal(objs[0].GetKind(), "Namespace"))
	assert.Check(t, is.Equal(objs[0].GetName(), kube.ControllerNamespace))
	kinds := map[string]int{}
	var deployments []*unstructured.Unstructured
	for i, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "CustomResourceDefinition" {
			assert.Check(t, i <= 4, "CRD %s at %d: CRDs go right after the Namespace", o.GetName(), i)
		}
		if o.GetKind() == "Deployment" {
			deployments = append(deployments, o)
		}
	}
	assert.Check(t, is.Equal(kinds["CustomResourceDefinition"], 4))
	assert.Check(t, kinds["ClusterRole"] >= 2, "core and extensions ClusterRoles: %v", kinds)
	assert.Check(t, is.Equal(kinds["Kustomization"], 0))
	assert.Assert(t, is.Len(deployments, 1), "the controller is declared once")

	containers, _, _ := unstructured.NestedSlice(deployments[0].Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	assert.Check(t, is.Equal(c["image"], "registry.k8s.io/agent-sandbox/agent-sandbox-controller:"+version))
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	assert.Check(t, is.Contains(args, "--extensions"))
	// extensions.controller.yaml's Deployment won: it mounts the optional config.
	vols, _, _ := unstructured.NestedSlice(deployments[0].Object, "spec", "template", "spec", "volumes")
	assert.Check(t, is.Len(vols, 1))

	data, err := json.Marshal(objs)
	assert.NilError(t, err)
	assert.Check(t, !strings.Contains(string(data), "ko://"), "a ko:// reference is left")
}

// fakeModule writes a module folder holding only k8s/ manifests.
func fakeModule(t *testing.T, controller string) string {
	t.Helper()
	dir := t.TempDir()
	assert.NilError(t, os.MkdirAll(filepath.Join(dir, "k8s", "crds"), 0o755))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "k8s", "controller.yaml"), []byte(controller), 0o644))
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "k8s", "crds", "x.yaml"),
		[]byte("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: xs.example.com\n"), 0o644))
	return dir
}

const coreOnlyController = `apiVersion: v1
kind: Namespace
metadata:
  name: agent-sandbox-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: agent-sandbox-controller
  namespace: agent-sandbox-system
spec:
  template:
    spec:
      initContainers:
      - name: setup
        image: ko://sigs.k8s.io/agent-sandbox/cmd/setup-tool
      containers:
      - name: agent-sandbox-controller
        image: ko://sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller
        args: ["--leader-elect=true"]
`

func TestRenderControllerAddsExtensionsAndRewritesImages(t *testing.T) {
	objs, err := kube.RenderController(fakeModule(t, coreOnlyController), "v9.9.9")
	assert.NilError(t, err)
	assert.Assert(t, is.Len(objs, 3))
	assert.Check(t, is.Equal(objs[1].GetKind(), "CustomResourceDefinition"))
	d := objs[2]
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	assert.Check(t, is.Equal(c["image"], "registry.k8s.io/agent-sandbox/agent-sandbox-controller:v9.9.9"))
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	assert.Check(t, is.DeepEqual(args, []string{"--leader-elect=true", "--extensions"}))
	inits, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "initContainers")
	assert.Check(t, is.Equal(inits[0].(map[string]any)["image"], "registry.k8s.io/agent-sandbox/setup-tool:v9.9.9"))
}

func TestRenderControllerErrors(t *testing.T) {
	_, err := kube.RenderController(t.TempDir(), "v1.0.0")
	assert.Check(t, is.ErrorContains(err, "agent-sandbox v1.0.0: no manifests in "))

	noDeployment := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: agent-sandbox-system\n"
	_, err = kube.RenderController(fakeModule(t, noDeployment), "v1.0.0")
	assert.Check(t, is.ErrorContains(err, "no Deployment agent-sandbox-controller"))

	koInAnnotation := strings.Replace(coreOnlyController, "spec:\n  template:", "spec:\n  template:\n    metadata:\n      annotations:\n        built-from: ko://somewhere", 1)
	_, err = kube.RenderController(fakeModule(t, koInAnnotation), "v1.0.0")
	assert.Check(t, is.ErrorContains(err, "ko:// image reference is left"))
}
