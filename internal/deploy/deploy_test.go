package deploy

import (
	"fmt"
	"strings"
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// TestRouterNamespace: with a router namespace, the router and the Gateway
// go there, templates and pools stay in Namespace, and the templates admit
// the router from its namespace.
func TestRouterNamespace(t *testing.T) {
	routerPeer := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{kube.RouterAppLabel: kube.RouterAppValue}}}
	otherPeer := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}}
	tmpl := kube.Template{SandboxTemplate: &extv1beta1.SandboxTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"},
		Spec: extv1beta1.SandboxTemplateSpec{NetworkPolicy: &extv1beta1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{routerPeer, otherPeer}}},
		}}}}

	where := func(opts Options) map[string]string {
		t.Helper()
		assert.NilError(t, opts.defaults())
		opts.GatewayClass, opts.GatewayPort = "c", 80
		got := map[string]string{}
		for _, o := range desiredObjects(opts, []kube.Template{tmpl}) {
			m, err := meta.Accessor(o)
			assert.NilError(t, err)
			kind := o.GetObjectKind().GroupVersionKind().Kind
			if kind == "" {
				kind = typeName(o)
			}
			if kind == "Namespace" {
				got[kind+" "+m.GetName()] = ""
				continue
			}
			got[kind+" "+m.GetName()] = m.GetNamespace()
		}
		return got
	}

	got := where(Options{Namespace: "team", RouterNamespace: "agent-sandbox-system", Gateway: "gw"})
	assert.Check(t, is.DeepEqual(got, map[string]string{
		"Namespace team":                                                    "",
		"Namespace agent-sandbox-system":                                    "",
		"ServiceAccount " + kube.RouterServiceAccount:                       "agent-sandbox-system",
		"ClusterRole " + routerClusterRole:                                  "",
		"ClusterRoleBinding " + routerClusterRole + "-agent-sandbox-system": "",
		"Deployment " + kube.RouterDeployment:                               "agent-sandbox-system",
		"Service " + kube.RouterService:                                     "agent-sandbox-system",
		"SandboxTemplate t":                                                 "team",
		"SandboxWarmPool t":                                                 "team",
		"Gateway gw":                                                        "agent-sandbox-system",
		"HTTPRoute " + GatewayRouteName("gw"):                               "agent-sandbox-system",
	}))

	opts := Options{Namespace: "team", RouterNamespace: "agent-sandbox-system"}
	assert.NilError(t, opts.defaults())
	var rewritten *extv1beta1.SandboxTemplate
	for _, o := range desiredObjects(opts, []kube.Template{tmpl}) {
		if st, ok := o.(*extv1beta1.SandboxTemplate); ok {
			rewritten = st
		}
	}
	assert.Assert(t, rewritten != nil)
	from := rewritten.Spec.NetworkPolicy.Ingress[0].From
	assert.Check(t, is.DeepEqual(from[0].NamespaceSelector, &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "agent-sandbox-system"}}))
	assert.Check(t, from[1].NamespaceSelector == nil, "only the router's peer is widened")
	assert.Check(t, tmpl.Spec.NetworkPolicy.Ingress[0].From[0].NamespaceSelector == nil, "the loaded template is not changed")

	// Without a router namespace, everything stays in Namespace, templates untouched.
	got = where(Options{Namespace: "team"})
	assert.Check(t, is.Equal(got["Deployment "+kube.RouterDeployment], "team"))
	assert.Check(t, is.Equal(got["ClusterRoleBinding "+routerClusterRole+"-team"], ""))
	_, twoNamespaces := got["Namespace agent-sandbox-system"]
	assert.Check(t, !twoNamespaces)
	opts = Options{Namespace: "team"}
	assert.NilError(t, opts.defaults())
	for _, o := range desiredObjects(opts, []kube.Template{tmpl}) {
		if st, ok := o.(*extv1beta1.SandboxTemplate); ok {
			assert.Check(t, st.Spec.NetworkPolicy.Ingress[0].From[0].NamespaceSelector == nil)
		}
	}
}

// typeName is an object's Go type name, its kind for the typed objects here.
func typeName(o any) string {
	s := fmt.Sprintf("%T", o)
	return s[strings.LastIndex(s, ".")+1:]
}
