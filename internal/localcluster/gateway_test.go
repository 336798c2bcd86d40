package localcluster

import (
	"testing"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func TestTargetPort(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "a", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090}}},
		{Name: "b", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
	}}}
	for _, tc := range []struct {
		sp   corev1.ServicePort
		want int32
	}{
		{corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8888)}, 8888},
		{corev1.ServicePort{Port: 80}, 80},
		{corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http")}, 8080},
		{corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("grpc")}, 0},
	} {
		assert.Check(t, is.Equal(targetPort(pod, &tc.sp), tc.want), "%+v", tc.sp)
	}
}

func TestAttachParent(t *testing.T) {
	all, same := gwv1.NamespacesFromAll, gwv1.NamespacesFromSame
	g := &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "infra"},
		Spec: gwv1.GatewaySpec{Listeners: []gwv1.Listener{
			{Name: "web", Protocol: gwv1.HTTPProtocolType, Port: 80},
			{Name: "open", Protocol: gwv1.HTTPProtocolType, Port: 8080, AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}}},
			{Name: "tcp", Protocol: gwv1.TCPProtocolType, Port: 9000},
			{Name: "grpc-only", Protocol: gwv1.HTTPProtocolType, Port: 8081, AllowedRoutes: &gwv1.AllowedRoutes{
				Namespaces: &gwv1.RouteNamespaces{From: &same}, Kinds: []gwv1.RouteGroupKind{{Kind: "GRPCRoute"}}}},
		}},
	}
	route := func(ns string) *gwv1.HTTPRoute {
		return &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: ns}}
	}
	section := func(s string) *gwv1.SectionName { n := gwv1.SectionName(s); return &n }
	port := func(p int32) *gwv1.PortNumber { n := gwv1.PortNumber(p); return &n }
	for _, tc := range []struct {
		name   string
		ns     string
		ref    gwv1.ParentReference
		want   []gwv1.SectionName
		reason gwv1.RouteConditionReason
	}{
		{"same namespace, no section: every HTTP listener for HTTPRoutes", "infra", gwv1.ParentReference{Name: "gw"}, []gwv1.SectionName{"web", "open"}, ""},
		{"by section", "infra", gwv1.ParentReference{Name: "gw", SectionName: section("open")}, []gwv1.SectionName{"open"}, ""},
		{"by port", "infra", gwv1.ParentReference{Name: "gw", Port: port(80)}, []gwv1.SectionName{"web"}, ""},
		{"another namespace: only from All", "apps", gwv1.ParentReference{Name: "gw", Namespace: (*gwv1.Namespace)(&g.Namespace)}, []gwv1.SectionName{"open"}, ""},
		{"another namespace, Same only", "apps", gwv1.ParentReference{Name: "gw", SectionName: section("web")}, nil, gwv1.RouteReasonNotAllowedByListeners},
		{"a TCP listener", "infra", gwv1.ParentReference{Name: "gw", SectionName: section("tcp")}, nil, gwv1.RouteReasonNoMatchingParent},
		{"no such section", "infra", gwv1.ParentReference{Name: "gw", SectionName: section("nope")}, nil, gwv1.RouteReasonNoMatchingParent},
	} {
		got := attachParent(route(tc.ns), tc.ref, g)
		assert.Check(t, is.DeepEqual(got.listeners, tc.want), tc.name)
		assert.Check(t, is.Equal(got.reason, tc.reason), tc.name)
	}
}
