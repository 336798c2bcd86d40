package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// DialFunc opens a connection to a pod's address; the data plane reaches
// pods only through it, so it works wherever pods live (host loopback
// addresses, or a network namespace the host cannot route to).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// gatewayAddrFirst is where the search for a Gateway's loopback address
// starts. Linux routes all of 127.0.0.0/8 to lo, so any address there can be
// bound without configuration; bind is the lock between clusters and users.
var gatewayAddrFirst = netip.MustParseAddr("127.77.0.1")

// gatewayAddrTries bounds the search for an address where every port of a
// Gateway is free.
const gatewayAddrTries = 1024

// dataPlane holds one loopback address per Gateway and an HTTP server per
// listener port there, proxying to the Gateway's routes' backends.
type dataPlane struct {
	dial   DialFunc
	listen func(network, addr string) (net.Listener, error) // net.Listen; tests inject failures
	first  netip.Addr
	tr     *http.Transport

	mu  sync.Mutex
	gws map[types.UID]*gatewayServer
}

type gatewayServer struct {
	name  string // namespace/name, for messages
	addr  netip.Addr
	ports map[int32]*portServer
}

// portServer is one listening port of a Gateway, or why it is not listening.
type portServer struct {
	ln    net.Listener
	srv   *http.Server
	err   error
	table atomic.Pointer[routeTable]
}

func newDataPlane(dial DialFunc) *dataPlane {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	return &dataPlane{
		dial:   dial,
		listen: net.Listen,
		first:  gatewayAddrFirst,
		tr: &http.Transport{
			DialContext:         dial,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		gws: map[types.UID]*gatewayServer{},
	}
}

// ensure makes the Gateway uid listen on ports at one stable address and
// returns the address and, per port that does not listen, why. Ports
// dropped from the list are closed. A new Gateway gets the first address
// of the range, not held by another Gateway here, where no port is in use.
func (p *dataPlane) ensure(uid types.UID, name string, ports []int32) (netip.Addr, map[int32]error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.gws[uid]
	if g == nil {
		if len(ports) == 0 {
			return netip.Addr{}, nil
		}
		var err error
		if g, err = p.allocate(name, ports); err != nil {
			errs := map[int32]error{}
			for _, port := range ports {
				errs[port] = err
			}
			return netip.Addr{}, errs
		}
		p.gws[uid] = g
	}
	want := map[int32]bool{}
	for _, port := range ports {
		want[port] = true
		if s := g.ports[port]; s == nil || s.ln == nil {
			g.ports[port] = p.bind(g, port) // retries a port that failed before
		}
	}
	errs := map[int32]error{}
	for port, s := range g.ports {
		if !want[port] {
			s.close()
			delete(g.ports, port)
		} else if s.err != nil {
			errs[port] = s.err
		}
	}
	return g.addr, errs
}

// allocate finds an address where no port is in use (other bind errors,
// such as a privileged port, do not move the Gateway: no address would help).
func (p *dataPlane) allocate(name string, ports []int32) (*gatewayServer, error) {
	taken := map[netip.Addr]bool{}
	for _, g := range p.gws {
		taken[g.addr] = true
	}
	a := p.first
	for range gatewayAddrTries {
		if !taken[a] {
			g := &gatewayServer{name: name, addr: a, ports: map[int32]*portServer{}}
			inUse := false
			for _, port := range ports {
				s := p.bind(g, port)
				g.ports[port] = s
				if errors.Is(s.err, syscall.EADDRINUSE) {
					inUse = true
					break
				}
			}
			if !inUse {
				return g, nil
			}
			g.close()
		}
		a = a.Next()
		if a.As4()[3] == 255 { // skip .255 and .0 of each /24
			a = a.Next().Next()
		}
	}
	return nil, fmt.Errorf("no address from %s on where all of ports %v are free after %d tries; free some, or use other listener ports", p.first, ports, gatewayAddrTries)
}

// bind opens one port of g; the error says why not, and what to do.
func (p *dataPlane) bind(g *gatewayServer, port int32) *portServer {
	s := &portServer{}
	hostPort := net.JoinHostPort(g.addr.String(), strconv.Itoa(int(port)))
	ln, err := p.listen("tcp", hostPort)
	if err != nil {
		s.err = bindError(hostPort, port, err)
		return s
	}
	s.ln = ln
	s.table.Store(&routeTable{gateway: g.name})
	s.srv = &http.Server{Handler: p.handler(s), ReadHeaderTimeout: 30 * time.Second}
	go s.srv.Serve(ln)
	return s
}

// bindError words a failed bind: a privileged port says which privilege
// would do, a port in use says so.
func bindError(hostPort string, port int32, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		start := "1024"
		if b, rerr := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); rerr == nil {
			start = strings.TrimSpace(string(b))
		}
		return wordedError{err, fmt.Sprintf("binding %s is not permitted: port %d is privileged (net.ipv4.ip_unprivileged_port_start=%s); "+
			"give the cluster's process CAP_NET_BIND_SERVICE, or run: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=%d; or use a listener port >= %s",
			hostPort, port, start, port, start)}
	case errors.Is(err, syscall.EADDRINUSE):
		return wordedError{err, fmt.Sprintf("%s is in use by another process (this Gateway keeps its address); free the port or use another listener port", hostPort)}
	}
	return fmt.Errorf("binding %s: %w", hostPort, err)
}

// wordedError is an error told in other words, still matching its cause
// (errors.Is), so allocate can tell a port in use.
type wordedError struct {
	err   error
	words string
}

func (e wordedError) Error() string { return e.words }
func (e wordedError) Unwrap() error { return e.err }

// setTable replaces the routes a port of Gateway uid serves.
func (p *dataPlane) setTable(uid types.UID, port int32, t *routeTable) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.gws[uid]; g != nil {
		if s := g.ports[port]; s != nil && s.ln != nil {
			s.table.Store(t)
		}
	}
}

// closeExcept closes the listeners of every Gateway not in live (deleted,
// or moved to another class).
func (p *dataPlane) closeExcept(live map[types.UID]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid, g := range p.gws {
		if !live[uid] {
			g.close()
			delete(p.gws, uid)
		}
	}
}

func (p *dataPlane) closeAll() {
	p.closeExcept(nil)
	p.tr.CloseIdleConnections()
}

func (g *gatewayServer) close() {
	for _, s := range g.ports {
		s.close()
	}
}

// close stops accepting and drops open connections; upgraded (hijacked)
// ones, which the server no longer tracks, last until an end closes them.
// The listener is closed here too: srv.Close closes only the listeners its
// Serve goroutine has registered, and one not yet scheduled would leave the
// port accepting for a moment after close returns.
func (s *portServer) close() {
	if s.srv != nil {
		s.srv.Close()
	}
	if s.ln != nil {
		s.ln.Close()
	}
}

// routeTable is what one port of a Gateway serves, in match precedence order.
type routeTable struct {
	gateway string
	rules   []*routeRule
}

// routeRule is one match of an HTTPRoute rule with the rule's endpoints.
type routeRule struct {
	route         string   // namespace/name of the HTTPRoute
	listenerHosts []string // hostnames of the listeners the route attached through; "" is any
	hostnames     []string // the route's; none is any
	pathType      string   // Exact, PathPrefix or RegularExpression
	path          string
	pathRE        *regexp.Regexp
	method        string
	headers       map[string]string // exact matches, canonical names
	endpoints     []endpoint
	noEndpoints   string // why endpoints is empty
	next          atomic.Uint32
}

type endpoint struct {
	addr string // ip:port
	pod  string
}

func (t *routeTable) match(r *http.Request) *routeRule {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, rule := range t.rules {
		if rule.matches(r, host) {
			return rule
		}
	}
	return nil
}

func (rule *routeRule) matches(r *http.Request, host string) bool {
	if !anyHostMatches(rule.listenerHosts, host) || (len(rule.hostnames) > 0 && !anyHostMatches(rule.hostnames, host)) {
		return false
	}
	switch rule.pathType {
	case "Exact":
		if r.URL.Path != rule.path {
			return false
		}
	case "RegularExpression":
		if rule.pathRE == nil || !rule.pathRE.MatchString(r.URL.Path) {
			return false
		}
	default: // PathPrefix: whole segments
		prefix := strings.TrimSuffix(rule.path, "/")
		if prefix != "" && r.URL.Path != prefix && !strings.HasPrefix(r.URL.Path, prefix+"/") {
			return false
		}
	}
	if rule.method != "" && r.Method != rule.method {
		return false
	}
	for k, v := range rule.headers {
		if r.Header.Get(k) != v {
			return false
		}
	}
	return true
}

// anyHostMatches: "" matches any host, "*.example.com" any subdomain.
func anyHostMatches(patterns []string, host string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == "" || p == host || (strings.HasPrefix(p, "*.") && strings.HasSuffix(host, p[1:])) {
			return true
		}
	}
	return len(patterns) == 0
}

type endpointKey struct{}

// handler proxies to a Ready endpoint of the first matching rule, round-robin.
func (p *dataPlane) handler(s *portServer) http.Handler {
	rp := &httputil.ReverseProxy{
		Transport: p.tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			ep := pr.In.Context().Value(endpointKey{}).(endpoint)
			pr.SetURL(&url.URL{Scheme: "http", Host: ep.addr})
			pr.Out.Host = pr.In.Host // a Gateway keeps the client's Host
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ep := r.Context().Value(endpointKey{}).(endpoint)
			http.Error(w, fmt.Sprintf("sandboxtest local gateway: backend pod %s at %s: %v", ep.pod, ep.addr, err), http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := s.table.Load()
		rule := t.match(r)
		if rule == nil {
			http.Error(w, fmt.Sprintf("sandboxtest local gateway %s: no HTTPRoute matches host %q path %q", t.gateway, r.Host, r.URL.Path), http.StatusNotFound)
			return
		}
		if len(rule.endpoints) == 0 {
			http.Error(w, fmt.Sprintf("sandboxtest local gateway %s: HTTPRoute %s: %s", t.gateway, rule.route, rule.noEndpoints), http.StatusServiceUnavailable)
			return
		}
		ep := rule.endpoints[int(rule.next.Add(1)-1)%len(rule.endpoints)]
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointKey{}, ep)))
	})
}
