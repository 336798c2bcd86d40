package connect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// DefaultGatewayTimeout is how long Gateway waits for the Gateway's address
// (and a first answer through it) when neither GatewayOptions.ReadyTimeout
// nor SANDBOXTEST_GATEWAY_TIMEOUT says otherwise; upstream's clients wait as long.
const DefaultGatewayTimeout = 3 * time.Minute

// GatewayOptions names the Gateway in front of the router.
type GatewayOptions struct {
	// Namespace of the Gateway. Default "default".
	Namespace string
	// Name of the Gateway. Required.
	Name string
	// RouterNamespace is where the router Service (kube.RouterService)
	// runs: the HTTPRoute that sends to it says which listener to use.
	// Default Namespace.
	RouterNamespace string
	// Scheme of the URL. Default: from the chosen listener's protocol
	// (HTTPS and TLS → https, anything else → http).
	Scheme string
	// ReadyTimeout bounds the wait for status.addresses and a first answer
	// through the address. Default DefaultGatewayTimeout (3m).
	ReadyTimeout time.Duration
	// Transport carries the requests to the Gateway: give one whose
	// TLSClientConfig trusts the CA of an https listener signed by a
	// private CA (see TransportWithCA). Default: Go's default transport,
	// which trusts the system's roots.
	Transport *http.Transport
}

func (o GatewayOptions) withDefaults() GatewayOptions {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.RouterNamespace == "" {
		o.RouterNamespace = o.Namespace
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultGatewayTimeout
	}
	return o
}

// gatewayPoll is how often Gateway looks at the Gateway's status.
const gatewayPoll = 250 * time.Millisecond

// Gateway waits, within ReadyTimeout, until the Gateway has an address in
// its status and answers HTTP there, and returns a connection to
// scheme://address[:port] (the port left out when it is the scheme's
// default). The listener is the one the HTTPRoute sending to the router
// attaches to (its parentRef's sectionName and port); without such a route,
// the first HTTP or HTTPS listener. Any HTTP answer to GET /healthz counts
// but a 404, 502, 503 or 504 (a Gateway whose route or backends are not
// there yet); a certificate the transport does not trust fails at once.
func Gateway(ctx context.Context, cfg *rest.Config, o GatewayOptions) (Conn, error) {
	if cfg == nil {
		return nil, errors.New("sandboxtest: gateway: no Kubernetes REST config")
	}
	gw, err := gwclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("sandboxtest: gateway: Gateway API client: %w", err)
	}
	return gatewayWith(ctx, gw, o)
}

func gatewayWith(ctx context.Context, gw gwclient.Interface, o GatewayOptions) (Conn, error) {
	o = o.withDefaults()
	if o.Name == "" {
		return nil, fmt.Errorf("sandboxtest: gateway: no Gateway name; set %s=[namespace/]name", EnvGateway)
	}
	if o.Scheme != "" && o.Scheme != "http" && o.Scheme != "https" {
		return nil, fmt.Errorf("sandboxtest: gateway %s/%s: scheme %q is neither http nor https", o.Namespace, o.Name, o.Scheme)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, o.ReadyTimeout, errSetupTimeout)
	defer cancel()
	last, phase := "not read yet", "waiting for status.addresses"
	for {
		g, err := gw.GatewayV1().Gateways(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("sandboxtest: Gateway %s/%s not found (Gateways in namespace %s: %s); "+
				"create it or set %s=[namespace/]name", o.Namespace, o.Name, o.Namespace, listGateways(ctx, gw, o.Namespace), EnvGateway)
		case err != nil:
			if ctx.Err() == nil {
				last = "reading it: " + err.Error()
			}
		case len(g.Status.Addresses) == 0:
			last = gatewayState(g)
		default:
			routes, routesErr := routerRoutes(ctx, gw, o.Namespace, o.RouterNamespace)
			l, why, err := chooseListener(g, routes, o.RouterNamespace, o.Scheme)
			if err != nil {
				return nil, err
			}
			if routesErr != nil {
				why += " (HTTPRoutes could not be listed: " + routesErr.Error() + ")"
			}
			u, err := gatewayURL(g, l, o.Scheme)
			if err != nil {
				return nil, err
			}
			phase = "waiting for an answer at " + u
			err = probeGateway(ctx, u, o.Transport)
			if err == nil {
				return &gatewayConn{url: u, transport: o.Transport, desc: fmt.Sprintf("gateway %s/%s at %s (listener %s, %s port %d: %s; address %s)",
					o.Namespace, o.Name, u, l.Name, l.Protocol, l.Port, why, g.Status.Addresses[0].Value)}, nil
			}
			if hint := permanent(err, u); hint != "" {
				return nil, fmt.Errorf("sandboxtest: Gateway %s/%s at %s (listener %s): %v; %s", o.Namespace, o.Name, u, l.Name, err, hint)
			}
			if ctx.Err() == nil {
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			what := "timed out after " + o.ReadyTimeout.String()
			if !errors.Is(context.Cause(ctx), errSetupTimeout) {
				what = context.Cause(ctx).Error()
			}
			if phase == "waiting for status.addresses" {
				return nil, fmt.Errorf("sandboxtest: Gateway %s/%s has no address: %s while %s (last state: %s); "+
					"check: kubectl -n %s describe gateway %s; to wait longer, set %s", o.Namespace, o.Name, what, phase, last, o.Namespace, o.Name, EnvGatewayTimeout)
			}
			return nil, fmt.Errorf("sandboxtest: Gateway %s/%s does not answer: %s while %s (last state: %s); "+
				"check its HTTPRoute to %s/%s: kubectl -n %s describe httproute; to wait longer, set %s",
				o.Namespace, o.Name, what, phase, last, o.RouterNamespace, kube.RouterService, o.RouterNamespace, EnvGatewayTimeout)
		case <-time.After(gatewayPoll):
		}
	}
}

// routerRoutes lists the HTTPRoutes that may carry the router's traffic: those
// of the Gateway's namespace and of the router's.
func routerRoutes(ctx context.Context, gw gwclient.Interface, gatewayNS, routerNS string) ([]gwv1.HTTPRoute, error) {
	var routes []gwv1.HTTPRoute
	var errs []error
	for i, ns := range []string{routerNS, gatewayNS} {
		if i == 1 && ns == routerNS {
			break
		}
		list, err := gw.GatewayV1().HTTPRoutes(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		routes = append(routes, list.Items...)
	}
	return routes, errors.Join(errs...)
}

// chooseListener picks the listener that carries the router's traffic: one
// that an HTTPRoute sending to the router Service (kube.RouterService in
// routerNS) attaches to, honouring its parentRefs' sectionName and port.
// Among several, the first in the Gateway's order whose protocol suits
// scheme, if given. Without such a route: the first HTTP or HTTPS listener,
// else the first. It also says why, for Describe.
func chooseListener(g *gwv1.Gateway, routes []gwv1.HTTPRoute, routerNS, scheme string) (gwv1.Listener, string, error) {
	ls := g.Spec.Listeners
	if len(ls) == 0 {
		return gwv1.Listener{}, "", fmt.Errorf("sandboxtest: Gateway %s/%s has no listeners", g.Namespace, g.Name)
	}
	sort.Slice(routes, func(i, j int) bool {
		return routes[i].Namespace+"/"+routes[i].Name < routes[j].Namespace+"/"+routes[j].Name
	})
	via := map[gwv1.SectionName]string{} // candidate listener → the route and parentRef that picked it
	var attached []string                // the router's routes' parentRefs to this Gateway, worded
	for _, r := range routes {
		if !sendsToRouter(&r, routerNS) {
			continue
		}
		for _, p := range r.Spec.ParentRefs {
			if !refersTo(p, r.Namespace, g) {
				continue
			}
			ref := "HTTPRoute " + r.Namespace + "/" + r.Name
			if p.SectionName != nil {
				ref += " sectionName " + string(*p.SectionName)
			}
			if p.Port != nil {
				ref += fmt.Sprintf(" port %d", *p.Port)
			}
			attached = append(attached, ref)
			for _, l := range ls {
				if routable(l) && (p.SectionName == nil || *p.SectionName == l.Name) && (p.Port == nil || *p.Port == l.Port) {
					if _, ok := via[l.Name]; !ok {
						via[l.Name] = ref
					}
				}
			}
		}
	}
	if len(attached) > 0 && len(via) == 0 {
		return gwv1.Listener{}, "", fmt.Errorf("sandboxtest: Gateway %s/%s has no HTTP or HTTPS listener that %s attaches to (its listeners: %s); "+
			"fix the route's parentRefs: kubectl -n %s edit httproute", g.Namespace, g.Name, strings.Join(attached, ", "), listenerList(ls), routerNS)
	}
	var candidates []gwv1.Listener
	for _, l := range ls {
		if _, ok := via[l.Name]; ok || (len(via) == 0 && routable(l)) {
			candidates = append(candidates, l)
		}
	}
	why := "chosen by " + strings.Join(attached, ", ")
	if len(via) == 0 {
		why = fmt.Sprintf("the first HTTP(S) listener: no HTTPRoute to %s/%s attaches to this Gateway", routerNS, kube.RouterService)
		if len(candidates) == 0 {
			candidates = ls
			why = fmt.Sprintf("the first listener: none is HTTP or HTTPS and no HTTPRoute to %s/%s attaches to this Gateway", routerNS, kube.RouterService)
		}
	}
	for _, l := range candidates {
		if scheme == "" || listenerScheme(l) == scheme {
			if r, ok := via[l.Name]; ok {
				why = "chosen by " + r
			}
			return l, why, nil
		}
	}
	if r, ok := via[candidates[0].Name]; ok {
		why = "chosen by " + r
	}
	return candidates[0], why, nil
}

// routable: an HTTPRoute attaches only to HTTP and HTTPS listeners.
func routable(l gwv1.Listener) bool {
	return l.Protocol == gwv1.HTTPProtocolType || l.Protocol == gwv1.HTTPSProtocolType
}

func listenerScheme(l gwv1.Listener) string {
	if l.Protocol == gwv1.HTTPSProtocolType || l.Protocol == gwv1.TLSProtocolType {
		return "https"
	}
	return "http"
}

func listenerList(ls []gwv1.Listener) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmt.Sprintf("%s %s:%d", l.Name, l.Protocol, l.Port))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// sendsToRouter reports whether a rule of r has the router Service as a backend.
func sendsToRouter(r *gwv1.HTTPRoute, routerNS string) bool {
	for _, rule := range r.Spec.Rules {
		for _, b := range rule.BackendRefs {
			ref := b.BackendObjectReference
			ns := r.Namespace
			if ref.Namespace != nil {
				ns = string(*ref.Namespace)
			}
			if (ref.Group == nil || *ref.Group == "") && (ref.Kind == nil || *ref.Kind == "Service") &&
				string(ref.Name) == kube.RouterService && ns == routerNS {
				return true
			}
		}
	}
	return false
}

// refersTo reports whether a parentRef of a route in routeNS names g.
func refersTo(p gwv1.ParentReference, routeNS string, g *gwv1.Gateway) bool {
	ns := routeNS
	if p.Namespace != nil {
		ns = string(*p.Namespace)
	}
	return (p.Group == nil || *p.Group == gwv1.GroupName) && (p.Kind == nil || *p.Kind == "Gateway") &&
		string(p.Name) == g.Name && ns == g.Namespace
}

// gatewayURL builds the router URL from a Gateway's first address and the listener.
func gatewayURL(g *gwv1.Gateway, l gwv1.Listener, scheme string) (string, error) {
	if scheme == "" {
		scheme = listenerScheme(l)
	}
	host := strings.TrimSpace(g.Status.Addresses[0].Value)
	if host == "" {
		return "", fmt.Errorf("sandboxtest: Gateway %s/%s has an empty address in its status", g.Namespace, g.Name)
	}
	port := int(l.Port)
	if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) || port == 0 {
		if strings.Contains(host, ":") { // IPv6
			host = "[" + host + "]"
		}
	} else {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return (&url.URL{Scheme: scheme, Host: host}).String(), nil
}

// probeGateway makes one request through the Gateway; any HTTP answer
// proves the path works, except a 404, 502, 503 or 504: the Gateway
// answers, but not yet the router behind it (a Gateway listens before its
// routes attach and its backends are Ready; the router's /healthz is never
// a 404).
func probeGateway(ctx context.Context, base string, tr *http.Transport) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if tr != nil {
		c.Transport = tr
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableKeepAlives = true
		c.Transport = t
	}
	return getHealthz(ctx, c, base, http.StatusNotFound, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout)
}

// permanent says how to fix a probe error that waiting cannot cure (the
// certificate is not trusted, or the scheme is wrong), or "" for one that
// may pass later.
func permanent(err error, base string) string {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &host): // before verify, which wraps it
		return "its certificate does not name the Gateway's address; give a transport whose TLSClientConfig.ServerName is a name the certificate holds " +
			"(sandboxtest.WithHTTPTransport, connect.GatewayOptions.Transport)"
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &invalid):
		return fmt.Sprintf("trust its CA: set %s to the CA's PEM file, or pass a transport that trusts it "+
			"(sandboxtest.WithHTTPTransport, connect.GatewayOptions.Transport; connect.TransportWithCA builds one)", EnvRouterCA)
	case errors.As(err, &record), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the listener does not speak " + strings.SplitN(base, ":", 2)[0] + "; check its protocol or set GatewayOptions.Scheme"
	}
	return ""
}

// TransportWithCA is a transport like Go's default that also trusts the
// certificates in caPEM (PEM-encoded), for a Gateway or router URL whose
// certificate a private CA signed.
func TransportWithCA(caPEM []byte) (*http.Transport, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("sandboxtest: the CA holds no PEM certificate (want -----BEGIN CERTIFICATE----- blocks)")
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

// gatewayState words a Gateway's conditions for error messages.
func gatewayState(g *gwv1.Gateway) string {
	var parts []string
	for _, t := range []gwv1.GatewayConditionType{gwv1.GatewayConditionProgrammed, gwv1.GatewayConditionAccepted} {
		if c := meta.FindStatusCondition(g.Status.Conditions, string(t)); c != nil {
			parts = append(parts, fmt.Sprintf("%s=%s%s", c.Type, c.Status, reasonOf(c.Reason, c.Message)))
		}
	}
	s := "no conditions"
	if len(parts) > 0 {
		s = strings.Join(parts, ", ")
	}
	s += ", no addresses"
	if c := meta.FindStatusCondition(g.Status.Conditions, string(gwv1.GatewayConditionAccepted)); c == nil || c.Status == metav1.ConditionUnknown {
		s += fmt.Sprintf("; no controller has accepted it: is one handling GatewayClass %q?", g.Spec.GatewayClassName)
	}
	return s
}

func listGateways(ctx context.Context, gw gwclient.Interface, ns string) string {
	if ctx.Err() != nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := gw.GatewayV1().Gateways(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "unknown: " + err.Error()
	}
	var names []string
	for _, g := range list.Items {
		names = append(names, g.Name)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

type gatewayConn struct {
	url, desc string
	transport *http.Transport
}

func (g *gatewayConn) URL() string                { return g.url }
func (g *gatewayConn) Mode() Mode                 { return ModeGateway }
func (g *gatewayConn) Describe() string           { return g.desc }
func (g *gatewayConn) Transport() *http.Transport { return g.transport }
func (g *gatewayConn) Close() error               { return nil }
