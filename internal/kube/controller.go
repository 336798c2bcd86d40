package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

// Upstream's controller install, as its release tooling renders it.
const (
	// ControllerImageRegistry is where upstream publishes release images
	// (helm/values.yaml: registry.k8s.io/agent-sandbox/agent-sandbox-controller).
	ControllerImageRegistry = "registry.k8s.io/agent-sandbox"
	ControllerNamespace     = "agent-sandbox-system"
	ControllerDeployment    = "agent-sandbox-controller"
	// ExtensionsFlag turns on the claim, template and warm-pool controllers.
	ExtensionsFlag = "--extensions"
)

// RenderController reads the controller manifests of the agent-sandbox module
// at version (moduleDir is its module cache folder) and returns what to apply
// to install the controller with extensions, in apply order: Namespaces,
// then CRDs, then the rest.
//
// It does what upstream's dev/tools/deploy-to-kube --extensions does: every
// k8s/*.yaml and k8s/crds/*.yaml, the extensions* files last so that
// extensions.controller.yaml's Deployment (the one with --extensions)
// replaces controller.yaml's, and ko:// image references rewritten to the
// published release image.
func RenderController(moduleDir, version string) ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(moduleDir, "k8s")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	crds, _ := filepath.Glob(filepath.Join(dir, "crds", "*.yaml"))
	if len(files) == 0 || len(crds) == 0 {
		return nil, fmt.Errorf("agent-sandbox %s: no manifests in %s", version, dir)
	}
	sort.SliceStable(files, func(i, j int) bool {
		return !isExtensionsFile(files[i]) && isExtensionsFile(files[j])
	})

	byKey := map[string]*unstructured.Unstructured{}
	var order []string
	for _, f := range append(files, crds...) {
		if filepath.Base(f) == "kustomization.yaml" {
			continue // kustomize's assembly of these same files, not an object
		}
		objs, err := readManifest(f)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
			if _, seen := byKey[key]; !seen {
				order = append(order, key)
			}
			byKey[key] = o // a later file wins, as a later kubectl apply would
		}
	}

	var out []*unstructured.Unstructured
	for _, k := range order {
		out = append(out, byKey[k])
	}
	sort.SliceStable(out, func(i, j int) bool { return applyRank(out[i]) < applyRank(out[j]) })

	if err := enableExtensions(out); err != nil {
		return nil, fmt.Errorf("agent-sandbox %s: %w", version, err)
	}
	for _, o := range out {
		if err := rewriteKoImages(o, version); err != nil {
			return nil, fmt.Errorf("agent-sandbox %s: %s %s: %w", version, o.GetKind(), o.GetName(), err)
		}
	}
	return out, nil
}

// ControllerImage is the published controller image of a release.
func ControllerImage(version string) string {
	return ControllerImageRegistry + "/agent-sandbox-controller:" + version
}

func isExtensionsFile(f string) bool { return strings.HasPrefix(filepath.Base(f), "extensions") }

// applyRank puts Namespaces first and CRDs second: the rest live in the one
// and may be of the kinds the other defines.
func applyRank(o *unstructured.Unstructured) int {
	switch o.GetKind() {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	}
	return 2
}

func readManifest(f string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		delete(u.Object, "status")
		out = append(out, u)
	}
}

// enableExtensions makes sure the controller Deployment runs with
// --extensions, as the kustomize patch in k8s/kustomization.yaml does, in
// case a version's extensions.controller.yaml lacks it.
func enableExtensions(objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if o.GetKind() != "Deployment" || o.GetName() != ControllerDeployment {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for i, c := range containers {
			cm, _ := c.(map[string]any)
			if cm["name"] != ControllerDeployment {
				continue
			}
			args, _, _ := unstructured.NestedStringSlice(cm, "args")
			for _, a := range args {
				if a == ExtensionsFlag || a == ExtensionsFlag+"=true" {
					return nil
				}
			}
			cm["args"] = toAnySlice(append(args, ExtensionsFlag))
			containers[i] = cm
			return unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
		}
		return fmt.Errorf("Deployment %s has no container %q", ControllerDeployment, ControllerDeployment)
	}
	return fmt.Errorf("no Deployment %s in k8s/*.yaml", ControllerDeployment)
}

// rewriteKoImages replaces ko://<import path> images (ko builds them from
// source) with the published image named after the command's folder,
// ko://sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller →
// registry.k8s.io/agent-sandbox/agent-sandbox-controller:VERSION.
func rewriteKoImages(o *unstructured.Unstructured, version string) error {
	for _, field := range []string{"containers", "initContainers"} {
		containers, found, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
		if !found {
			continue
		}
		for i, c := range containers {
			cm, _ := c.(map[string]any)
			image, _ := cm["image"].(string)
			if rest, ok := strings.CutPrefix(image, "ko://"); ok {
				cm["image"] = ControllerImageRegistry + "/" + path.Base(rest) + ":" + version
				containers[i] = cm
			}
		}
		if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", field); err != nil {
			return err
		}
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	if bytes.Contains(data, []byte("ko://")) {
		return errors.New("a ko:// image reference is left where sandboxtest does not rewrite it")
	}
	return nil
}

func toAnySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// InstallController renders the controller of agent-sandbox at version
// (moduleDir is its module cache folder) and server-side applies it.
func InstallController(ctx context.Context, cfg *rest.Config, moduleDir, version string) ([]Applied, error) {
	objs, err := RenderController(moduleDir, version)
	if err != nil {
		return nil, err
	}
	applier, err := NewApplier(cfg)
	if err != nil {
		return nil, err
	}
	var out []Applied
	for _, o := range objs {
		a, err := applier.Apply(ctx, o)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}
