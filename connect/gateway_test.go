package connect

import (
	"context"
	"net/http"
	"os"
	"strings"
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
	return createGatewayTo(tc, name, class, gwv1.HTTPProtocolType, port, kube.RouterService, labelled)
}

// createGatewayTo creates a Gateway with one listener (named after its
// protocol) and an HTTPRoute from it to backend:8080.
func createGatewayTo(tc *testCluster, name, class string, proto gwv1.ProtocolType, port int32, backend string, labelled bool) error {
	ctx := context.Background()
	labels := map[string]string{}
	if labelled {
		labels[kube.LabelGateway] = "true"
	}
	_, err := tc.gw.GatewayV1().Gateways(testNS).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: labels},
		Spec: gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(class),
			Listeners: []gwv1.Listener{{Name: gwv1.SectionName(strings.ToLower(string(proto))), Protocol: proto, Port: gwv1.PortNumber(port)}}},
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
				BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(backend), Port: &port8080},
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

	// On port 80 the URL has no port, as upstream's clients build it; the
	// cluster's process may bind port 80 when it runs as root.
	if os.Geteuid() != 0 {
		t.Skip("port 80 needs root, CAP_NET_BIND_SERVICE or net.ipv4.ip_unprivileged_port_start <= 80")
	}
	assert.NilError(t, createGateway(tc, "port-80-gw", kube.LocalGatewayClass, 80, false))
	conn80, err := Gateway(context.Background(), tc.cfg, GatewayOptions{Name: "port-80-gw", ReadyTimeout: time.Minute})
	assert.NilError(t, err)
	defer conn80.Close()
	g80, err := tc.gw.GatewayV1().Gateways(testNS).Get(context.Background(), "port-80-gw", metav1.GetOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(conn80.URL(), "http://"+g80.Status.Addresses[0].Value))
	assert.Check(t, g80.Status.Addresses[0].Value != g.Status.Addresses[0].Value, "two Gateways on one address")
	out = execute(t, conn80.URL(), sb, "echo through port 80")
	assert.Check(t, is.Equal(out.Stdout, "through port 80\n"))
}

func TestGatewayWithoutAddressNamesItsCondition(t *testing.T) {
	tc := cluster(t)
	ctx := context.Background()
	// A TCP listener on the local class: the controller refuses it (Programmed=False, Invalid).
	assert.NilError(t, createGatewayTo(tc, "tcp-gw", kube.LocalGatewayClass, gwv1.TCPProtocolType, 8080, kube.RouterService, false))
	started := time.Now()
	_, err := Gateway(ctx, tc.cfg, GatewayOptions{Name: "tcp-gw", ReadyTimeout: 3 * time.Second})
	t.Logf("failed after %s: %v", time.Since(started).Round(time.Millisecond), err)
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "Gateway default/tcp-gw has no address: timed out after 3s while waiting for status.addresses"))
	assert.Check(t, is.ErrorContains(err, "Programmed=False (Invalid: listener tcp: protocol TCP: the local gateway serves HTTP listeners only"))
	assert.Check(t, is.ErrorContains(err, "kubectl -n default describe gateway tcp-gw"))

	// A Gateway that listens, but with no Ready pod behind its route: its
	// 503s are not the router's answer, so Gateway waits, then says so.
	assert.NilError(t, createGatewayTo(tc, "no-backend-gw", kube.LocalGatewayClass, gwv1.HTTPProtocolType, 8080, "no-such-svc", false))
	_, err = Gateway(ctx, tc.cfg, GatewayOptions{Name: "no-backend-gw", ReadyTimeout: 3 * time.Second})
	t.Logf("%v", err)
	noBareDeadline(t, err)
	assert.Check(t, is.ErrorContains(err, "Gateway default/no-backend-gw does not answer: timed out after 3s while waiting for an answer at http://127.77."))
	assert.Check(t, is.ErrorContains(err, "GET /healthz: 503 Service Unavailable: sandboxtest local gateway default/no-backend-gw: HTTPRoute default/no-backend-gw: Service default/no-such-svc not found"))

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
	gw := func(proto gwv1.ProtocolType, port int32, addr string) (*gwv1.Gateway, gwv1.Listener) {
		l := gwv1.Listener{Name: "l", Protocol: proto, Port: gwv1.PortNumber(port)}
		return &gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"},
			Spec:       gwv1.GatewaySpec{Listeners: []gwv1.Listener{l}},
			Status:     gwv1.GatewayStatus{Addresses: []gwv1.GatewayStatusAddress{{Type: &ip, Value: addr}}},
		}, l
	}
	for _, tc := range []struct {
		proto  gwv1.ProtocolType
		port   int32
		addr   string
		scheme string
		want   string
	}{
		{gwv1.HTTPProtocolType, 80, "10.0.0.1", "", "http://10.0.0.1"},
		{gwv1.HTTPProtocolType, 8080, "10.0.0.1", "", "http://10.0.0.1:8080"},
		{gwv1.HTTPSProtocolType, 443, "gw.example.com", "", "https://gw.example.com"},
		{gwv1.HTTPSProtocolType, 8443, "gw.example.com", "", "https://gw.example.com:8443"},
		{gwv1.TLSProtocolType, 443, "10.0.0.2", "", "https://10.0.0.2"},
		{gwv1.HTTPProtocolType, 443, "10.0.0.3", "", "http://10.0.0.3:443"},
		{gwv1.HTTPProtocolType, 443, "10.0.0.3", "https", "https://10.0.0.3"},
		{gwv1.HTTPProtocolType, 80, "fd00::1", "", "http://[fd00::1]"},
		{gwv1.HTTPProtocolType, 8080, "fd00::1", "", "http://[fd00::1]:8080"},
	} {
		g, l := gw(tc.proto, tc.port, tc.addr)
		got, err := gatewayURL(g, l, tc.scheme)
		assert.Check(t, err)
		assert.Check(t, is.Equal(got, tc.want))
	}
	_, _, err := chooseListener(&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"}}, nil, "ns", "")
	assert.Check(t, is.ErrorContains(err, "Gateway ns/g has no listeners"))
}

// TestChooseListener is the listener choice alone: the HTTPRoute that
// sends to the router says which listener carries it.
func TestChooseListener(t *testing.T) {
	listener := func(name string, proto gwv1.ProtocolType, port int32) gwv1.Listener {
		return gwv1.Listener{Name: gwv1.SectionName(name), Protocol: proto, Port: gwv1.PortNumber(port)}
	}
	g := &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "infra"},
		Spec: gwv1.GatewaySpec{Listeners: []gwv1.Listener{
			listener("tcp", gwv1.TCPProtocolType, 9000),
			listener("http", gwv1.HTTPProtocolType, 80),
			listener("https", gwv1.HTTPSProtocolType, 443),
			listener("alt-https", gwv1.HTTPSProtocolType, 8443),
		}},
	}
	ptr := func(s string) *string { return &s }
	type parent struct {
		ns, name, section string
		port              int32
		kind              string
	}
	route := func(ns, name, backendNS, backend string, parents ...parent) gwv1.HTTPRoute {
		r := gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		for _, p := range parents {
			ref := gwv1.ParentReference{Name: gwv1.ObjectName(p.name)}
			if p.ns != "" {
				ref.Namespace = (*gwv1.Namespace)(ptr(p.ns))
			}
			if p.section != "" {
				ref.SectionName = (*gwv1.SectionName)(ptr(p.section))
			}
			if p.port != 0 {
				port := gwv1.PortNumber(p.port)
				ref.Port = &port
			}
			if p.kind != "" {
				ref.Kind = (*gwv1.Kind)(ptr(p.kind))
			}
			r.Spec.ParentRefs = append(r.Spec.ParentRefs, ref)
		}
		b := gwv1.BackendObjectReference{Name: gwv1.ObjectName(backend)}
		if backendNS != "" {
			b.Namespace = (*gwv1.Namespace)(ptr(backendNS))
		}
		r.Spec.Rules = []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: b}}}}}
		return r
	}
	const router = kube.RouterService
	for _, tc := range []struct {
		name     string
		routes   []gwv1.HTTPRoute
		routerNS string
		scheme   string
		want     string // listener name
		why      string // part of the reason
		wantErr  string
	}{
		{name: "no route: the first HTTP(S) listener, not the TCP one", routerNS: "infra",
			want: "http", why: "the first HTTP(S) listener: no HTTPRoute to infra/sandbox-router-svc attaches to this Gateway"},
		{name: "no route, https asked", routerNS: "infra", scheme: "https", want: "https"},
		{name: "sectionName picks the listener",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge", section: "alt-https"})}, routerNS: "infra",
			want: "alt-https", why: "chosen by HTTPRoute infra/r sectionName alt-https"},
		{name: "port picks the listener",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge", port: 443})}, routerNS: "infra",
			want: "https", why: "chosen by HTTPRoute infra/r port 443"},
		{name: "no sectionName: every HTTP(S) listener, first in order",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge"})}, routerNS: "infra",
			want: "http", why: "chosen by HTTPRoute infra/r"},
		{name: "no sectionName, https asked",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge"})}, routerNS: "infra", scheme: "https",
			want: "https"},
		{name: "a scheme the route's listener lacks does not move to another listener",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge", section: "http"})}, routerNS: "infra", scheme: "https",
			want: "http", why: "chosen by HTTPRoute infra/r sectionName http"},
		{name: "route in the router namespace, Gateway elsewhere",
			routes: []gwv1.HTTPRoute{route("agent-sandbox-system", "r", "", router, parent{ns: "infra", name: "edge", section: "https"})}, routerNS: "agent-sandbox-system",
			want: "https", why: "chosen by HTTPRoute agent-sandbox-system/r sectionName https"},
		{name: "route to another backend is ignored",
			routes: []gwv1.HTTPRoute{
				route("infra", "a-web", "", "web", parent{name: "edge", section: "alt-https"}),
				route("infra", "b-router", "", router, parent{name: "edge", section: "https"}),
			}, routerNS: "infra", want: "https", why: "chosen by HTTPRoute infra/b-router sectionName https"},
		{name: "route to a router of another namespace is ignored",
			routes: []gwv1.HTTPRoute{route("infra", "r", "other", router, parent{name: "edge", section: "alt-https"})}, routerNS: "infra",
			want: "http"},
		{name: "route attached to another Gateway is ignored",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "other-gw", section: "alt-https"})}, routerNS: "infra",
			want: "http"},
		{name: "a parentRef of another kind is ignored",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge", section: "alt-https", kind: "Service"})}, routerNS: "infra",
			want: "http"},
		{name: "a parentRef in another namespace is another Gateway",
			routes: []gwv1.HTTPRoute{route("apps", "r", "infra", router, parent{name: "edge", section: "alt-https"})}, routerNS: "infra",
			want: "http"},
		{name: "two routes: the first by namespace/name wins",
			routes: []gwv1.HTTPRoute{
				route("infra", "z", "", router, parent{name: "edge", section: "https"}),
				route("infra", "a", "", router, parent{name: "edge", section: "alt-https"}),
			}, routerNS: "infra", want: "https", why: "chosen by HTTPRoute infra/z sectionName https"},
		{name: "a sectionName with no such listener",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge", section: "gone"})}, routerNS: "infra",
			wantErr: "sandboxtest: Gateway infra/edge has no HTTP or HTTPS listener that HTTPRoute infra/r sectionName gone attaches to " +
				"(its listeners: [tcp TCP:9000, http HTTP:80, https HTTPS:443, alt-https HTTPS:8443]); fix the route's parentRefs: kubectl -n infra edit httproute"},
		{name: "a sectionName naming the TCP listener",
			routes: []gwv1.HTTPRoute{route("infra", "r", "", router, parent{name: "edge", section: "tcp"})}, routerNS: "infra",
			wantErr: "has no HTTP or HTTPS listener that HTTPRoute infra/r sectionName tcp attaches to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, why, err := chooseListener(g, tc.routes, tc.routerNS, tc.scheme)
			if tc.wantErr != "" {
				assert.Check(t, is.ErrorContains(err, tc.wantErr))
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(string(l.Name), tc.want))
			assert.Check(t, is.Contains(why, tc.why))
		})
	}

	// Only TCP listeners: the first one, as before routes were read.
	tcpOnly := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{Listeners: []gwv1.Listener{listener("a", gwv1.TCPProtocolType, 1), listener("b", gwv1.TLSProtocolType, 2)}}}
	l, why, err := chooseListener(tcpOnly, nil, "ns", "https")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(string(l.Name), "b"))
	assert.Check(t, is.Contains(why, "the first listener: none is HTTP or HTTPS"))
}
