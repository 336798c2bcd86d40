// Package connect decides how HTTP requests reach the sandbox-router, and
// keeps that path open.
//
// There are three ways:
//
//   - [Tunnel]: a client-go SPDY port-forward through kube-apiserver to a
//     Ready pod behind the router Service, on 127.0.0.1. It heals itself:
//     when the forward ends or its pod goes away, it re-establishes to a
//     (possibly other) Ready pod.
//   - [Gateway]: the address a Gateway API controller published in a
//     Gateway's status.
//   - [Direct]: a URL the caller already knows.
//
// [Auto] chooses one from the environment and the cluster and says why
// ([Choose] is the decision alone); [Shared] hands every caller of a process
// the same connection, so all the sandboxes of a test binary share one tunnel.
//
// Environment variables read by [Choose] (through [AutoOptions.Env]):
//
//	SANDBOXTEST_API_URL           the router's base URL: direct mode
//	SANDBOXTEST_GATEWAY           [namespace/]name of a Gateway in front of the router: gateway mode
//	SANDBOXTEST_MODE              tunnel | gateway | direct: forces a mode
//	CI                            with a Gateway labelled sandboxtest.io/gateway: gateway mode
//	SANDBOXTEST_ROUTER_NAMESPACE  where the router Service, its pods and the Gateways are
//	                              (default: the sandboxes' namespace)
//	SANDBOXTEST_GATEWAY_TIMEOUT   how long to wait for the Gateway's address (default 3m)
//	SANDBOXTEST_ROUTER_CA         PEM file of the CA that signed an https Gateway's or
//	                              router URL's certificate
package connect

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Mode is a way to reach the router.
type Mode string

const (
	ModeTunnel  Mode = "tunnel"  // port-forward through the API server
	ModeGateway Mode = "gateway" // a Gateway's published address
	ModeDirect  Mode = "direct"  // a URL given by the user
)

// Modes lists the valid modes, in the order they are documented.
var Modes = []Mode{ModeTunnel, ModeGateway, ModeDirect}

// Environment variables Choose reads.
const (
	EnvAPIURL  = "SANDBOXTEST_API_URL"
	EnvGateway = "SANDBOXTEST_GATEWAY"
	EnvMode    = "SANDBOXTEST_MODE"
	EnvCI      = "CI"

	EnvRouterNamespace = "SANDBOXTEST_ROUTER_NAMESPACE"
	EnvGatewayTimeout  = "SANDBOXTEST_GATEWAY_TIMEOUT"
	EnvRouterCA        = "SANDBOXTEST_ROUTER_CA"
)

// Conn is an open way to the router.
type Conn interface {
	// URL is the router's base URL right now, without a trailing slash
	// (http://127.0.0.1:<port> for a tunnel). A tunnel's URL may change
	// after it is re-established; read it for every request.
	URL() string
	// Mode says which kind of connection this is.
	Mode() Mode
	// Describe says where the bytes go, for logs and failure reports.
	Describe() string
	// Transport is the HTTP transport that reaches URL: the one given for
	// an https Gateway or router URL with a private CA, or nil when any
	// ordinary transport will do.
	Transport() *http.Transport
	// Close releases the connection. Idempotent.
	Close() error
}

type directConn struct {
	url       string
	transport *http.Transport
}

// Direct is a connection to a router URL the caller knows (http or https,
// with a host, no query or fragment). It checks the URL's form, not that
// something answers there.
func Direct(rawURL string) (Conn, error) {
	u, err := checkURL(rawURL)
	if err != nil {
		return nil, err
	}
	return &directConn{url: u}, nil
}

// checkURL validates a router base URL and returns it without a trailing slash.
func checkURL(rawURL string) (string, error) {
	hint := "want the router's base URL, e.g. http://sandbox-router.example:8080"
	s := strings.TrimSpace(rawURL)
	if s == "" {
		return "", fmt.Errorf("sandboxtest: router URL is empty; %s", hint)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("sandboxtest: router URL %q does not parse (%v); %s", rawURL, err, hint)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("sandboxtest: router URL %q has scheme %q, not http or https; %s", rawURL, u.Scheme, hint)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("sandboxtest: router URL %q has no host; %s", rawURL, hint)
	case u.User != nil:
		return "", fmt.Errorf("sandboxtest: router URL %q carries user info; the router takes no credentials in the URL", rawURL)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("sandboxtest: router URL %q has a query or fragment; %s", rawURL, hint)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("sandboxtest: router URL %q has an invalid port %q; %s", rawURL, p, hint)
		}
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func (d *directConn) URL() string      { return d.url }
func (d *directConn) Mode() Mode       { return ModeDirect }
func (d *directConn) Describe() string { return "direct to " + d.url }
func (d *directConn) Close() error     { return nil }

func (d *directConn) Transport() *http.Transport { return d.transport }
