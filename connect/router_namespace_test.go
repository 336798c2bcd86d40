package connect

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// routerNS holds a router of its own, apart from the sandboxes in testNS,
// as upstream's manifests put it in agent-sandbox-system.
const routerNS = "routers"

// TestRouterInItsOwnNamespace: the tunnel and the Gateway find the router in
// its namespace, and it reaches a sandbox of another namespace, which the
// requests name in X-Sandbox-Namespace.
func TestRouterInItsOwnNamespace(t *testing.T) {
	tc := cluster(t)
	sb := sandbox(t)
	ctx := context.Background()
	_, err := tc.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: routerNS}}, metav1.CreateOptions{})
	assert.NilError(t, err)
	// Another app label than the default namespace's router, so nothing
	// could pick those pods by mistake.
	assert.NilError(t, tc.deployRouter(ctx, routerNS, kube.RouterDeployment, kube.RouterService, "own-ns-router", 1))
	assert.NilError(t, tc.waitRouterPods(ctx, routerNS, "own-ns-router", 1, 90*time.Second))

	for _, o := range []AutoOptions{
		{Namespace: testNS, RouterNamespace: routerNS, Env: env{"SANDBOXTEST_MODE": "tunnel"}.get},
		{Namespace: testNS, Env: env{"SANDBOXTEST_MODE": "tunnel", "SANDBOXTEST_ROUTER_NAMESPACE": routerNS}.get},
	} {
		o.Tunnel.Log = t.Logf
		conn, _, err := Auto(ctx, tc.cfg, o)
		assert.NilError(t, err)
		t.Logf("%s", conn.Describe())
		assert.Check(t, is.Contains(conn.Describe(), "tunnel to "+routerNS+"/"+kube.RouterDeployment+"-"))
		assert.Check(t, is.Contains(conn.Describe(), "service "+routerNS+"/"+kube.RouterService))
		out := execute(t, conn.URL(), sb, "echo from a router in namespace "+routerNS)
		assert.Check(t, is.Equal(out.Stdout, "from a router in namespace "+routerNS+"\n"))
		assert.NilError(t, conn.Close())
	}

	// A Gateway in the router namespace, labelled for CI, with its route there.
	port := gwv1.PortNumber(kube.RouterPort)
	_, err = tc.gw.GatewayV1().Gateways(routerNS).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "own-ns-gw", Namespace: routerNS, Labels: map[string]string{kube.LabelGateway: "true"}},
		Spec: gwv1.GatewaySpec{GatewayClassName: kube.LocalGatewayClass,
			Listeners: []gwv1.Listener{{Name: "http", Protocol: gwv1.HTTPProtocolType, Port: port}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	section := gwv1.SectionName("http")
	_, err = tc.gw.GatewayV1().HTTPRoutes(routerNS).Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "own-ns-gw", Namespace: routerNS},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "own-ns-gw", SectionName: &section}}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: kube.RouterService, Port: &port}}}}}},
		},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	conn, c, err := Auto(ctx, tc.cfg, AutoOptions{Namespace: testNS, RouterNamespace: routerNS, Env: env{"CI": "true"}.get})
	assert.NilError(t, err)
	defer conn.Close()
	t.Logf("chose %s: %s", c, conn.Describe())
	assert.Check(t, is.Equal(c.Reason, "CI is set and Gateway routers/own-ns-gw is labelled sandboxtest.io/gateway"))
	assert.Check(t, is.Contains(conn.Describe(), "chosen by HTTPRoute routers/own-ns-gw sectionName http"))
	code, _, err := get(conn.URL(), "/healthz")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK))
	out := execute(t, conn.URL(), sb, "echo through the gateway of the router namespace")
	assert.Check(t, is.Equal(out.Stdout, "through the gateway of the router namespace\n"))
}

// TestRouterMissingInItsNamespace: a router namespace without the router
// says where it looked, where the sandboxes are, where a router is, and
// how to fix it.
func TestRouterMissingInItsNamespace(t *testing.T) {
	tc := cluster(t)
	_, _, err := Auto(context.Background(), tc.cfg, AutoOptions{Namespace: testNS, RouterNamespace: "agent-sandbox-system",
		Env: env{"SANDBOXTEST_MODE": "tunnel"}.get})
	t.Logf("%v", err)
	assert.Check(t, errors.Is(err, ErrRouterNotFound))
	assert.Check(t, is.ErrorContains(err, "sandboxtest: sandbox-router-svc not found in the router namespace agent-sandbox-system (the sandboxes are in namespace default)"))
	assert.Check(t, is.ErrorContains(err, "deploy it there: sandboxtest-setup deploy --namespace default --router-namespace agent-sandbox-system, "+
		"or use the sandbox-router-svc in namespace default")) // and maybe routers, when that test ran first
	assert.Check(t, is.ErrorContains(err, ": SANDBOXTEST_ROUTER_NAMESPACE=default"))
	assert.Check(t, is.ErrorContains(err, "(mode tunnel chosen because SANDBOXTEST_MODE=tunnel)"))
}

// TestGatewayTimeoutFromTheEnvironment: SANDBOXTEST_GATEWAY_TIMEOUT bounds
// the wait for an address, and the error names it.
func TestGatewayTimeoutFromTheEnvironment(t *testing.T) {
	tc := cluster(t)
	assert.NilError(t, createGateway(tc, "never-programmed-gw", "nobody-handles-this-either", 8080, false))
	_, _, err := Auto(context.Background(), tc.cfg, AutoOptions{
		Env: env{"SANDBOXTEST_GATEWAY": "never-programmed-gw", "SANDBOXTEST_GATEWAY_TIMEOUT": "2s"}.get})
	t.Logf("%v", err)
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "sandboxtest: Gateway default/never-programmed-gw has no address: timed out after 2s while waiting for status.addresses"))
	assert.Check(t, is.ErrorContains(err, `no controller has accepted it: is one handling GatewayClass "nobody-handles-this-either"?`))
	assert.Check(t, is.ErrorContains(err, "to wait longer, set SANDBOXTEST_GATEWAY_TIMEOUT"))
	assert.Check(t, is.ErrorContains(err, "(mode gateway chosen because SANDBOXTEST_GATEWAY=never-programmed-gw is set)"))
}

// TestRouterMissingWording: the message for each case, from a fake cluster.
func TestRouterMissingWording(t *testing.T) {
	ctx := context.Background()
	svc := func(ns string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: kube.RouterService, Namespace: ns}}
	}
	o := TunnelOptions{Namespace: "agent-sandbox-system", SandboxNamespace: "team"}.withDefaults()
	err := routerMissing(ctx, kubefake.NewClientset(), o)
	assert.Check(t, errors.Is(err, ErrRouterNotFound))
	assert.Check(t, is.Error(err, "sandboxtest: sandbox-router-svc not found in the router namespace agent-sandbox-system (the sandboxes are in namespace team); "+
		"deploy it there: sandboxtest-setup deploy --namespace team --router-namespace agent-sandbox-system, "+
		"or set SANDBOXTEST_ROUTER_NAMESPACE to the namespace the router runs in"))

	err = routerMissing(ctx, kubefake.NewClientset(svc("team"), svc("infra")), o)
	assert.Check(t, is.ErrorContains(err, ", or use the sandbox-router-svc in namespace infra or team: SANDBOXTEST_ROUTER_NAMESPACE=infra"))

	o = TunnelOptions{Namespace: "team"}.withDefaults()
	err = routerMissing(ctx, kubefake.NewClientset(svc("default")), o)
	assert.Check(t, is.Error(err, "sandboxtest: sandbox-router-svc not found in namespace team; run: sandboxtest-setup deploy --namespace team, "+
		"or use the sandbox-router-svc in namespace default: SANDBOXTEST_ROUTER_NAMESPACE=default"))
}
