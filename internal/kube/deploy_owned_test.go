package kube_test

import (
	"context"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	templates "github.com/agentsandbox/go-sandboxtest"
	"github.com/agentsandbox/go-sandboxtest/internal/deploy"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// TestDeployLeavesOthersObjectsAlone (deploy's, run here on this package's
// cluster): a user's own template and pool named like sandboxtest's are a
// conflict that applies nothing, until Force takes them over.
func TestDeployLeavesOthersObjectsAlone(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "deploy-own-")
	const name = "python-sandbox-template"
	x := ext.ExtensionsV1beta1()
	mine := template(ns, name)
	mine.Labels = map[string]string{"team": "mine"}
	tmpl, err := x.SandboxTemplates(ns).Create(ctx, mine, metav1.CreateOptions{})
	assert.NilError(t, err)
	one := int32(1)
	pool, err := x.SandboxWarmPools(ns).Create(ctx, &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"team": "mine"}},
		Spec:       extv1beta1.SandboxWarmPoolSpec{Replicas: &one, TemplateRef: extv1beta1.SandboxTemplateRef{Name: name}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)

	opts := deploy.Options{Namespace: ns, Templates: templates.FS, Wait: -1}
	_, err = deploy.Deploy(ctx, cluster.RESTConfig, opts)
	assert.Check(t, is.ErrorContains(err, "SandboxTemplate "+ns+"/"+name+" exists and is not sandboxtest's"))
	assert.Check(t, is.ErrorContains(err, "SandboxWarmPool "+ns+"/"+name+" exists and is not sandboxtest's"))
	assert.Check(t, is.ErrorContains(err, "take them over with --force"))
	gotT, err := x.SandboxTemplates(ns).Get(ctx, name, metav1.GetOptions{})
	assert.NilError(t, err)
	// Generation and labels: the controller writes status, which changes resourceVersion.
	assert.Check(t, is.Equal(gotT.Generation, tmpl.Generation), "the user's template was changed")
	assert.Check(t, is.Equal(gotT.Labels[kube.LabelManagedBy], ""))
	gotP, err := x.SandboxWarmPools(ns).Get(ctx, name, metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(*gotP.Spec.Replicas, int32(1)))
	assert.Check(t, is.Equal(gotP.Generation, pool.Generation), "the user's pool was changed")
	assert.Check(t, is.Equal(gotP.Labels[kube.LabelManagedBy], ""))
	_, err = cs.AppsV1().Deployments(ns).Get(ctx, kube.RouterDeployment, metav1.GetOptions{})
	assert.Check(t, apierrors.IsNotFound(err), "a conflict applies nothing, yet the router was deployed (%v)", err)

	opts.Force = true
	_, err = deploy.Deploy(ctx, cluster.RESTConfig, opts)
	assert.NilError(t, err)
	gotP, err = x.SandboxWarmPools(ns).Get(ctx, name, metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(*gotP.Spec.Replicas, int32(0)), "taken over: the pool is deploy's")
	assert.Check(t, is.Equal(gotP.Labels[kube.LabelManagedBy], kube.ManagedByValue))
	gotT, err = x.SandboxTemplates(ns).Get(ctx, name, metav1.GetOptions{})
	assert.NilError(t, err)
	ports := gotT.Spec.PodTemplate.Spec.Containers[0].Ports
	assert.Check(t, len(ports) == 1 && ports[0].Name == "runtime", "the template was not replaced: ports %+v", ports)

	// Once deploy's, a plain deploy applies again.
	opts.Force = false
	_, err = deploy.Deploy(ctx, cluster.RESTConfig, opts)
	assert.NilError(t, err)
}
