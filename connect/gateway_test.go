package connect

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

const routerGatewayName = "router-gw"

var routerGatewayOnce sync.Once

// routerGateway creates (once) a Gateway of the local class, labelled
// sandboxtest.io/gateway, with an HTTPRoute to sandbox-router-svc:8080.
func routerGateway(t *testing.T) {
	t.Helper()
	tc := cluster(t)
	var err error
	routerGatewayOnce.Do(func() { err = createGateway(tc, routerGatewayName, kube.LocalGatewayClass, 8080, true) })
	assert.NilError(t, err)
}

func createGateway(tc *testCluster, name, class string, port int32, labelled bool) error {
	ctx := context.Background()
	labels := map[string]string{}
	if labelled {
		labels[kube.LabelGateway] = "true"
	}
	_, err := tc.gw.GatewayV1().Gateways(testNS).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: labels},
		Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(class),
			Listeners: []gwv1.Listener{{Name: "http", Protocol: gwv1.HTTPProtocolType, Port: gwv1.PortNumber(port)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	port8080 := gwv1.PortNumber(kube.RouterPort)
	_, err = tc.gw.GatewayV1().HTTPRoutes(testNS).Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: gwv1.ObjectName(name)}}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: kube.RouterService, Port: &port8080},
			}}}}},
		},
	}, metav1.CreateOptions{})
	return err
}

func TestGatewayReachesRouterAndSandbox(t *testing.T) {
	tc := cluster(t)
	sb := sandbox(t)
	routerGateway(t)

	started := time.Now()
	conn, err := Gateway(context.Background(), tc.cfg, GatewayOptions{Name: routerGatewayName})
	assert.NilError(t, err)
	defer conn.Close()
	t.Logf("gateway address in %s: %s", time.Since(started).Round(time.Millisecond), conn.Describe())

	assert.Check(t, is.Equal(conn.Mode(), ModeGateway))
	g, err := tc.gw.GatewayV1().Gateways(testNS).Get(context.Background(), routerGatewayName, metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Assert(t, len(g.Status.Addresses) > 0)
	assert.Check(t, is.Equal(conn.URL(), "http://"+g.Status.Addresses[0].Value+":8080"))
	assert.Check(t, is.Contains(conn.Describe(), "gateway default/router-gw at http://"))

	code, body, err := get(conn.URL(), "/healthz")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK), body)
	out := execute(t, conn.URL(), sb, "echo through the gateway")
	assert.Check(t, is.Equal(out.Stdout, "through the gateway\n"))
}

func TestGatewayWithoutAddressNamesItsCondition(t *testing.T) {
	tc := cluster(t)
	ctx := context.Background()
	// Port 80 on the local class: the controller refuses it (Programmed=False, Invalid).
	assert.NilError(t, createGateway(tc, "wrong-port-gw", kube.LocalGatewayClass, 80, false))
	started := time.Now()
	_, err := Gateway(ctx, tc.cfg, GatewayOptions{Name: "wrong-port-gw", ReadyTimeout: 3 * time.Second})
	t.Logf("failed after %s: %v", time.Since(started).Round(time.Millisecond), err)
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "Gateway default/wrong-port-gw has no address: timed out after 3s while waiting for status.addresses"))
	assert.Check(t, is.ErrorContains(err, "Programmed=False (Invalid: listener http uses port 80"))
	assert.Check(t, is.ErrorContains(err, "kubectl -n default describe gateway wrong-port-gw"))

	// A class nobody handles: no conditions at all.
	assert.NilError(t, createGateway(tc, "orphan-gw", "nobody-handles-this", 8080, false))
	_, err = Gateway(ctx, tc.cfg, GatewayOptions{Name: "orphan-gw", ReadyTimeout: time.Second})
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "Gateway default/orphan-gw has no address: timed out after 1s"))
	assert.Check(t, is.ErrorContains(err, `no controller has accepted it: is one handling GatewayClass "nobody-handles-this"?`))
}

func TestGatewayNotFoundListsTheOthers(t *testing.T) {
	tc := cluster(t)
	routerGateway(t)
	_, err := Gateway(context.Background(), tc.cfg, GatewayOptions{Name: "absent-gw", ReadyTimeout: 5 * time.Second})
	assert.Check(t, is.ErrorContains(err, "Gateway default/absent-gw not found (Gateways in namespace default: ["))
	assert.Check(t, is.ErrorContains(err, routerGatewayName))
	assert.Check(t, is.ErrorContains(err, "set SANDBOXTEST_GATEWAY=[namespace/]name"))

	_, err = Gateway(context.Background(), tc.cfg, GatewayOptions{})
	assert.Check(t, is.ErrorContains(err, "no Gateway name"))
}

func TestGatewayURL(t *testing.T) {
	ip := gwv1.IPAddressType
	gw := func(proto gwv1.ProtocolType, port int32, addr string) *gwv1.Gateway {
		return &gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"},
			Spec:       gwv1.GatewaySpec{Listeners: []gwv1.Listener{{Name: "l", Protocol: proto, Port: gwv1.PortNumber(port)}}},
			Status:     gwv1.GatewayStatus{Addresses: []gwv1.GatewayStatusAddress{{Type: &ip, Value: addr}}},
		}
	}
	for _, tc := range []struct {
		g      *gwv1.Gateway
		scheme string
		want   string
	}{
		{gw(gwv1.HTTPProtocolType, 80, "10.0.0.1"), "", "http://10.0.0.1"},
		{gw(gwv1.HTTPProtocolType, 8080, "10.0.0.1"), "", "http://10.0.0.1:8080"},
		{gw(gwv1.HTTPSProtocolType, 443, "gw.example.com"), "", "https://gw.example.com"},
		{gw(gwv1.HTTPSProtocolType, 8443, "gw.example.com"), "", "https://gw.example.com:8443"},
		{gw(gwv1.TLSProtocolType, 443, "10.0.0.2"), "", "https://10.0.0.2"},
		{gw(gwv1.HTTPProtocolType, 443, "10.0.0.3"), "", "http://10.0.0.3:443"},
		{gw(gwv1.HTTPProtocolType, 443, "10.0.0.3"), "https", "https://10.0.0.3"},
		{gw(gwv1.HTTPProtocolType, 80, "fd00::1"), "", "http://[fd00::1]"},
		{gw(gwv1.HTTPProtocolType, 8080, "fd00::1"), "", "http://[fd00::1]:8080"},
	} {
		got, _, err := gatewayURL(tc.g, tc.scheme)
		assert.Check(t, err)
		assert.Check(t, is.Equal(got, tc.want))
	}
	_, _, err := gatewayURL(&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"}}, "")
	assert.Check(t, is.ErrorContains(err, "Gateway ns/g has no listeners"))
}
