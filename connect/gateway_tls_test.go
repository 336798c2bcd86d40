package connect

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// fakeGatewayAt is a fake Gateway API holding Gateway ns/gw, programmed with
// address 127.0.0.1 and one listener of proto on port, and an HTTPRoute
// from that listener to the router.
func fakeGatewayAt(t *testing.T, proto gwv1.ProtocolType, port int) *gwfake.Clientset {
	t.Helper()
	cs := gwfake.NewSimpleClientset() //nolint:staticcheck // see fakeGateways
	ip := gwv1.IPAddressType
	ctx := context.Background()
	_, err := cs.GatewayV1().Gateways("ns").Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "ns"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "any", Listeners: []gwv1.Listener{
			{Name: "plain", Protocol: gwv1.HTTPProtocolType, Port: 1}, // first, but not the route's
			{Name: "tls", Protocol: proto, Port: gwv1.PortNumber(port)},
		}},
		Status: gwv1.GatewayStatus{Addresses: []gwv1.GatewayStatusAddress{{Type: &ip, Value: "127.0.0.1"}}},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	section := gwv1.SectionName("tls")
	_, err = cs.GatewayV1().HTTPRoutes("ns").Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "to-router", Namespace: "ns"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "gw", SectionName: &section}}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: kube.RouterService}}}}}},
		},
	}, metav1.CreateOptions{})
	assert.NilError(t, err)
	return cs
}

func serverPort(t *testing.T, srv *httptest.Server) int {
	t.Helper()
	_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	assert.NilError(t, err)
	port, err := strconv.Atoi(p)
	assert.NilError(t, err)
	return port
}

func caPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// TestGatewayHTTPSWithPrivateCA: an HTTPS listener whose certificate a
// private CA signed (httptest's) is refused at once, with the fix, unless
// the transport trusts that CA; then requests go through Conn.Transport.
func TestGatewayHTTPSWithPrivateCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("router over tls " + r.URL.Path))
	}))
	defer srv.Close()
	gw := fakeGatewayAt(t, gwv1.HTTPSProtocolType, serverPort(t, srv))
	ctx := context.Background()

	// The system's roots do not know httptest's CA: no waiting, the fix named.
	_, err := gatewayWith(ctx, gw, GatewayOptions{Namespace: "ns", Name: "gw", ReadyTimeout: time.Minute})
	t.Logf("untrusted: %v", err)
	assert.Check(t, is.ErrorContains(err, "sandboxtest: Gateway ns/gw at https://127.0.0.1:"))
	assert.Check(t, is.ErrorContains(err, "(listener tls)"))
	assert.Check(t, is.ErrorContains(err, "certificate"))
	assert.Check(t, is.ErrorContains(err, "trust its CA: set SANDBOXTEST_ROUTER_CA to the CA's PEM file"))

	tr, err := TransportWithCA(caPEM(srv))
	assert.NilError(t, err)
	conn, err := gatewayWith(ctx, gw, GatewayOptions{Namespace: "ns", Name: "gw", Transport: tr})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(conn.URL(), srv.URL))
	assert.Check(t, conn.Transport() == tr)
	assert.Check(t, is.Contains(conn.Describe(), "listener tls, HTTPS port"))
	assert.Check(t, is.Contains(conn.Describe(), "chosen by HTTPRoute ns/to-router sectionName tls"))
	resp, err := (&http.Client{Transport: conn.Transport()}).Get(conn.URL() + "/healthz")
	assert.NilError(t, err)
	defer resp.Body.Close()
	assert.Check(t, is.Equal(resp.StatusCode, http.StatusOK))

	// The same through Auto, from SANDBOXTEST_ROUTER_CA.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	assert.NilError(t, os.WriteFile(caFile, caPEM(srv), 0o600))
	conn, c, err := Auto(ctx, nil, AutoOptions{GatewayAPI: gw, Namespace: "ns",
		Env: env{"SANDBOXTEST_GATEWAY": "ns/gw", "SANDBOXTEST_ROUTER_CA": caFile}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(c.Mode, ModeGateway))
	assert.Check(t, conn.Transport() != nil)
	resp, err = (&http.Client{Transport: conn.Transport()}).Get(conn.URL() + "/x")
	assert.NilError(t, err)
	resp.Body.Close()

	// A transport given to Auto wins over the variable.
	conn, _, err = Auto(ctx, nil, AutoOptions{GatewayAPI: gw, Transport: tr, Namespace: "ns",
		Env: env{"SANDBOXTEST_GATEWAY": "ns/gw", "SANDBOXTEST_ROUTER_CA": "/nonexistent/ca.pem"}.get})
	assert.NilError(t, err)
	assert.Check(t, conn.Transport() == tr)

	_, _, err = Auto(ctx, nil, AutoOptions{GatewayAPI: gw,
		Env: env{"SANDBOXTEST_GATEWAY": "ns/gw", "SANDBOXTEST_ROUTER_CA": "/nonexistent/ca.pem"}.get})
	assert.Check(t, is.ErrorContains(err, "sandboxtest: SANDBOXTEST_ROUTER_CA: open /nonexistent/ca.pem: no such file or directory; point it at the PEM file"))

	notPEM := filepath.Join(t.TempDir(), "not.pem")
	assert.NilError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	_, _, err = Auto(ctx, nil, AutoOptions{GatewayAPI: gw,
		Env: env{"SANDBOXTEST_API_URL": srv.URL, "SANDBOXTEST_ROUTER_CA": notPEM}.get})
	assert.Check(t, is.ErrorContains(err, "the CA holds no PEM certificate"))
}

// TestGatewayHTTPSListenerOnPlainHTTP: an https URL to a server speaking
// plain http fails at once and says so.
func TestGatewayHTTPSListenerOnPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	gw := fakeGatewayAt(t, gwv1.HTTPSProtocolType, serverPort(t, srv))
	_, err := gatewayWith(context.Background(), gw, GatewayOptions{Namespace: "ns", Name: "gw", ReadyTimeout: time.Minute})
	assert.Check(t, is.ErrorContains(err, "the listener does not speak https; check its protocol or set GatewayOptions.Scheme"))

	// Forced to http, the same listener works.
	conn, err := gatewayWith(context.Background(), gw, GatewayOptions{Namespace: "ns", Name: "gw", Scheme: "http"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(conn.URL(), srv.URL))
	assert.Check(t, conn.Transport() == nil)
}

// TestDirectKeepsTheTransport: in direct mode the caller's transport
// reaches the Conn too.
func TestDirectKeepsTheTransport(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	tr, err := TransportWithCA(caPEM(srv))
	assert.NilError(t, err)
	conn, _, err := Auto(context.Background(), nil, AutoOptions{Transport: tr, Env: env{"SANDBOXTEST_API_URL": srv.URL}.get})
	assert.NilError(t, err)
	assert.Check(t, conn.Transport() == tr)
	resp, err := (&http.Client{Transport: conn.Transport()}).Get(conn.URL())
	assert.NilError(t, err)
	resp.Body.Close()

	_, err = TransportWithCA([]byte("not a certificate"))
	assert.Check(t, is.ErrorContains(err, "the CA holds no PEM certificate"))
}
