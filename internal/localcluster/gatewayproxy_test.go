package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"k8s.io/apimachinery/pkg/types"
)

// testPlane is a data plane whose address search starts at first (tests use
// their own /24 so that they do not meet a cluster's Gateways), counting dials.
func testPlane(t *testing.T, first string) (*dataPlane, *atomic.Int32) {
	t.Helper()
	var dials atomic.Int32
	p := newDataPlane(func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	})
	p.first = netip.MustParseAddr(first)
	t.Cleanup(p.closeAll)
	return p, &dials
}

func freePort(t *testing.T, host string) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	assert.NilError(t, err)
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

func get(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	assert.NilError(t, err)
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	assert.NilError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDataPlaneProxiesThroughTheDialFunction(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %s %s host=%s xff=%s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()
	p, dials := testPlane(t, "127.77.250.1")
	port := freePort(t, "127.77.250.1")
	addr, errs := p.ensure("uid-1", "ns/gw", []int32{port})
	assert.Check(t, is.Len(errs, 0))
	base := fmt.Sprintf("http://%s:%d", addr, port)

	code, body := get(t, base+"/healthz", nil)
	assert.Check(t, is.Equal(code, http.StatusNotFound))
	assert.Check(t, is.Contains(body, "sandboxtest local gateway ns/gw: no HTTPRoute matches host"))

	ep := endpoint{addr: backend.Listener.Addr().String(), pod: "ns/router-0"}
	p.setTable("uid-1", port, &routeTable{gateway: "ns/gw", rules: []*routeRule{
		{route: "ns/api", listenerHosts: []string{""}, pathType: "PathPrefix", path: "/api", noEndpoints: "no Ready pod behind Service ns/api"},
		{route: "ns/web", listenerHosts: []string{""}, hostnames: []string{"*.example.com"}, pathType: "PathPrefix", path: "/", endpoints: []endpoint{ep}},
		{route: "ns/r", listenerHosts: []string{""}, pathType: "PathPrefix", path: "/", endpoints: []endpoint{ep}},
	}})
	code, body = get(t, base+"/healthz?x=1", nil)
	assert.Check(t, is.Equal(code, http.StatusOK))
	assert.Check(t, is.Equal(body, "backend GET /healthz?x=1 host="+addr.String()+":"+strconv.Itoa(int(port))+" xff=127.0.0.1"))
	assert.Check(t, dials.Load() >= 1, "the proxy did not dial through the data plane's dial function")

	code, body = get(t, base+"/api/x", nil)
	assert.Check(t, is.Equal(code, http.StatusServiceUnavailable))
	assert.Check(t, is.Contains(body, "HTTPRoute ns/api: no Ready pod behind Service ns/api"))
	code, _ = get(t, base+"/apix", nil) // a prefix matches whole segments only
	assert.Check(t, is.Equal(code, http.StatusOK))

	// An unreachable pod is a 502 that names it.
	dead := freePort(t, "127.0.0.1")
	p.setTable("uid-1", port, &routeTable{gateway: "ns/gw", rules: []*routeRule{{route: "ns/r", listenerHosts: []string{""}, pathType: "PathPrefix", path: "/",
		endpoints: []endpoint{{addr: fmt.Sprintf("127.0.0.1:%d", dead), pod: "ns/gone"}}}}})
	code, body = get(t, base+"/", nil)
	assert.Check(t, is.Equal(code, http.StatusBadGateway))
	assert.Check(t, is.Contains(body, "backend pod ns/gone at 127.0.0.1:"))

	// Closed with the Gateway: nothing listens there any more.
	p.closeExcept(map[types.UID]bool{})
	_, err := net.Dial("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(int(port))))
	assert.Check(t, err != nil, "the deleted Gateway's listener still accepts")
}

func TestDataPlaneUpgrade(t *testing.T) {
	// A backend that switches protocols and then echoes lines, as a
	// websocket server would after its handshake.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo: " + line)
		rw.Flush()
	}))
	defer backend.Close()
	p, _ := testPlane(t, "127.77.251.1")
	port := freePort(t, "127.77.251.1")
	addr, errs := p.ensure("uid-u", "ns/gw", []int32{port})
	assert.Check(t, is.Len(errs, 0))
	p.setTable("uid-u", port, &routeTable{gateway: "ns/gw", rules: []*routeRule{{route: "ns/r", listenerHosts: []string{""}, pathType: "PathPrefix", path: "/",
		endpoints: []endpoint{{addr: backend.Listener.Addr().String(), pod: "ns/p"}}}}})

	conn, err := net.Dial("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(int(port))))
	assert.NilError(t, err)
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(resp.StatusCode, http.StatusSwitchingProtocols))
	fmt.Fprintf(conn, "hello\n")
	line, err := br.ReadString('\n')
	assert.NilError(t, err)
	assert.Check(t, is.Equal(line, "echo: hello\n"))
}

// TestDataPlaneAddresses: Gateways get distinct addresses; a port in use
// moves a new Gateway to the next address, but never one that has its
// address, whose listener then says the port is in use.
func TestDataPlaneAddresses(t *testing.T) {
	p, _ := testPlane(t, "127.77.252.1")
	port := freePort(t, "127.77.252.1")
	squatter, err := net.Listen("tcp", fmt.Sprintf("127.77.252.1:%d", port))
	assert.NilError(t, err)
	defer squatter.Close()

	a, errs := p.ensure("a", "ns/a", []int32{port})
	assert.Check(t, is.Len(errs, 0))
	assert.Check(t, is.Equal(a.String(), "127.77.252.2"), "the first address has the port in use")
	b, errs := p.ensure("b", "ns/b", []int32{port})
	assert.Check(t, is.Len(errs, 0))
	assert.Check(t, is.Equal(b.String(), "127.77.252.3"), "a Gateway of this plane holds .2")
	again, _ := p.ensure("a", "ns/a", []int32{port})
	assert.Check(t, is.Equal(again, a), "the address is stable")

	// A second port, in use at a's address: a keeps its address and says why.
	other := freePort(t, "127.77.252.2")
	squat2, err := net.Listen("tcp", fmt.Sprintf("127.77.252.2:%d", other))
	assert.NilError(t, err)
	a2, errs := p.ensure("a", "ns/a", []int32{port, other})
	assert.Check(t, is.Equal(a2, a))
	assert.Check(t, is.ErrorContains(errs[other], fmt.Sprintf("127.77.252.2:%d is in use by another process (this Gateway keeps its address); free the port or use another listener port", other)))
	// Freed, the next ensure (the controller's resync) binds it.
	squat2.Close()
	_, errs = p.ensure("a", "ns/a", []int32{port, other})
	assert.Check(t, is.Len(errs, 0))

	// Dropping a port closes it.
	p.ensure("a", "ns/a", []int32{port})
	_, err = net.Dial("tcp", fmt.Sprintf("127.77.252.2:%d", other))
	assert.Check(t, err != nil, "a port dropped from the Gateway still accepts")
}

// TestDataPlanePrivilegedPort: without the privilege to bind a port below
// ip_unprivileged_port_start, the listener says why and what to do, and the
// Gateway does not wander over the address range looking for one.
func TestDataPlanePrivilegedPort(t *testing.T) {
	start := 1024
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		start, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if start <= 80 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start=%d: port 80 needs no privilege here", start)
	}
	p, _ := testPlane(t, "127.77.253.1")
	high := freePort(t, "127.77.253.1")
	var addr netip.Addr
	var errs map[int32]error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Capabilities belong to a thread: drop CAP_NET_BIND_SERVICE on this
		// one only, and let it die with the goroutine (never unlocked).
		runtime.LockOSThread()
		if os.Geteuid() == 0 {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				t.Errorf("capget: %v", err)
				return
			}
			data[0].Effective &^= 1 << unix.CAP_NET_BIND_SERVICE
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				t.Errorf("capset: %v", err)
				return
			}
		}
		addr, errs = p.ensure("priv", "ns/priv", []int32{80, high})
	}()
	<-done
	assert.Check(t, is.Equal(addr.String(), "127.77.253.1"), "a privileged port must not move the Gateway")
	assert.Check(t, is.Len(errs, 1))
	want := fmt.Sprintf("binding 127.77.253.1:80 is not permitted: port 80 is privileged (net.ipv4.ip_unprivileged_port_start=%d); "+
		"give the cluster's process CAP_NET_BIND_SERVICE, or run: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80; or use a listener port >= %d", start, start)
	assert.Check(t, is.ErrorContains(errs[80], want))
	conn, err := net.Dial("tcp", fmt.Sprintf("127.77.253.1:%d", high))
	assert.Check(t, err, "the other port of the Gateway listens")
	if conn != nil {
		conn.Close()
	}
}

func TestRouteMatching(t *testing.T) {
	rule := func(listenerHost string, hostnames []string, pathType, path, method string, headers map[string]string) *routeRule {
		return &routeRule{listenerHosts: []string{listenerHost}, hostnames: hostnames, pathType: pathType, path: path, method: method, headers: headers}
	}
	req := func(method, host, path string, h ...string) *http.Request {
		r := httptest.NewRequest(method, "http://"+host+path, nil)
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		rule *routeRule
		req  *http.Request
		want bool
	}{
		{rule("", nil, "PathPrefix", "/", "", nil), req("GET", "127.77.0.1:8080", "/anything"), true},
		{rule("", nil, "PathPrefix", "/api/", "", nil), req("GET", "h", "/api"), true},
		{rule("", nil, "PathPrefix", "/api", "", nil), req("GET", "h", "/api/v1"), true},
		{rule("", nil, "PathPrefix", "/api", "", nil), req("GET", "h", "/apiv1"), false},
		{rule("", nil, "Exact", "/healthz", "", nil), req("GET", "h", "/healthz"), true},
		{rule("", nil, "Exact", "/healthz", "", nil), req("GET", "h", "/healthz/x"), false},
		{rule("", nil, "PathPrefix", "/", "POST", nil), req("GET", "h", "/"), false},
		{rule("", nil, "PathPrefix", "/", "", map[string]string{"X-Sandbox-Id": "a"}), req("GET", "h", "/", "X-Sandbox-ID", "a"), true},
		{rule("", nil, "PathPrefix", "/", "", map[string]string{"X-Sandbox-Id": "a"}), req("GET", "h", "/", "X-Sandbox-ID", "b"), false},
		{rule("gw.example.com", nil, "PathPrefix", "/", "", nil), req("GET", "GW.example.com:80", "/"), true},
		{rule("gw.example.com", nil, "PathPrefix", "/", "", nil), req("GET", "127.77.0.1", "/"), false},
		{rule("*.example.com", nil, "PathPrefix", "/", "", nil), req("GET", "a.b.example.com", "/"), true},
		{rule("", []string{"*.example.com"}, "PathPrefix", "/", "", nil), req("GET", "example.com", "/"), false},
	} {
		rt := &routeTable{rules: []*routeRule{tc.rule}}
		got := rt.match(tc.req) != nil
		assert.Check(t, is.Equal(got, tc.want), "rule %s %s %q %v %s %v, request %s %s%s", tc.rule.pathType, tc.rule.path, tc.rule.listenerHosts, tc.rule.hostnames, tc.rule.method, tc.rule.headers, tc.req.Method, tc.req.Host, tc.req.URL.Path)
	}

	rules := []*routeRule{
		rule("", nil, "PathPrefix", "/", "", nil),
		rule("", nil, "PathPrefix", "/api", "", nil),
		rule("", nil, "Exact", "/api/x", "", nil),
		rule("", nil, "PathPrefix", "/api", "POST", nil),
	}
	sortRules(rules)
	var order []string
	for _, r := range rules {
		order = append(order, r.pathType+" "+r.path+" "+r.method)
	}
	assert.Check(t, is.DeepEqual(order, []string{"Exact /api/x ", "PathPrefix /api POST", "PathPrefix /api ", "PathPrefix / "}))
}
