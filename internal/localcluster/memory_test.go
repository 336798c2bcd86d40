package localcluster

import (
	"context"
	"regexp"
	"slices"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

var watchCacheMetric = regexp.MustCompile(`(?m)^apiserver_watch_cache_initializations_total\{group="([^"]*)",resource="([^"]*)"\}`)

// testWatchCaches: kube-apiserver keeps a watch cache for pods and every
// custom resource, and for no other built-in resource (uncachedResources);
// a resource that a later Kubernetes adds shows up here.
func testWatchCaches(ctx context.Context, t *testing.T, cp *ControlPlane) {
	cs := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	metrics, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	assert.NilError(t, err)
	var cached []string
	for _, m := range watchCacheMetric.FindAllStringSubmatch(string(metrics), -1) {
		cached = append(cached, m[2]+"."+m[1])
	}
	slices.Sort(cached)

	want := []string{"pods."}
	crds, err := apiextensionsclient.NewForConfigOrDie(cp.RESTConfig).ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	for _, crd := range crds.Items {
		want = append(want, crd.Spec.Names.Plural+"."+crd.Spec.Group)
	}
	slices.Sort(want)
	assert.Check(t, is.DeepEqual(cached, want), "resources with a watch cache (resource.group); add a new built-in one to uncachedResources")
}
