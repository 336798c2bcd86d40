package sandboxtest

import (
	"net/http"
	"os"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
)

// Defaults for what Options and SANDBOXTEST_* variables do not set.
const (
	DefaultNamespace    = "default"
	DefaultReadyTimeout = 3 * time.Minute
	DefaultTTL          = 30 * time.Minute
	DefaultServerPort   = 8888
	// shutdownGrace is added to the test's deadline for the claim's
	// shutdownTime, so the controller never deletes a sandbox a test still uses.
	shutdownGrace = 5 * time.Minute
)

// Keep says when a sandbox outlives its test, for debugging.
type Keep string

const (
	KeepNever     Keep = "never"
	KeepOnFailure Keep = "onfailure"
	KeepAlways    Keep = "always"
)

// settings are what New works with; options over environment over defaults.
type settings struct {
	namespace    string
	readyTimeout time.Duration
	ttl          time.Duration
	serverPort   int
	keep         Keep
	restConfig   *rest.Config
	labels       map[string]string

	routerNamespace string          // "" means namespace
	gatewayTimeout  time.Duration   // 0: connect's default or $SANDBOXTEST_GATEWAY_TIMEOUT
	transport       *http.Transport // nil: the runtime client's own
}

// Option configures New.
type Option func(*settings)

// WithNamespace sets the namespace of the template, pool and claim
// (default $SANDBOXTEST_NAMESPACE, else "default").
func WithNamespace(ns string) Option { return func(s *settings) { s.namespace = ns } }

// WithReadyTimeout bounds the wait for the sandbox to be Ready
// (default $SANDBOXTEST_READY_TIMEOUT, else 3m; never past the test's deadline).
func WithReadyTimeout(d time.Duration) Option { return func(s *settings) { s.readyTimeout = d } }

// WithTTL sets how long the claim lives when the test has no deadline
// (default $SANDBOXTEST_TTL, else 30m). The controller deletes it then even if
// the test binary was killed.
func WithTTL(d time.Duration) Option { return func(s *settings) { s.ttl = d } }

// WithServerPort is the port the sandbox's runtime server listens on
// (default: the template's container port named "runtime", else its first
// declared port, else 8888).
func WithServerPort(port int) Option { return func(s *settings) { s.serverPort = port } }

// WithKeep keeps the sandbox after the test (default: -sandboxtest.keep, $SANDBOXTEST_KEEP, else never).
func WithKeep(k Keep) Option { return func(s *settings) { s.keep = k } }

// WithRestConfig uses cfg instead of the kubeconfig ($KUBECONFIG, ~/.kube/config).
func WithRestConfig(cfg *rest.Config) Option { return func(s *settings) { s.restConfig = cfg } }

// WithLabels adds labels to the SandboxClaim.
func WithLabels(l map[string]string) Option {
	return func(s *settings) {
		for k, v := range l {
			s.labels[k] = v
		}
	}
}

// WithRouterNamespace is where the sandbox router (sandbox-router-svc, its
// pods, and the Gateways in front of it) runs, when not beside the sandboxes
// (upstream's manifests put it in agent-sandbox-system). Default
// $SANDBOXTEST_ROUTER_NAMESPACE, else the sandboxes' namespace.
func WithRouterNamespace(ns string) Option { return func(s *settings) { s.routerNamespace = ns } }

// WithGatewayTimeout bounds the wait for the Gateway's address in gateway
// mode (default $SANDBOXTEST_GATEWAY_TIMEOUT, else 3m, as upstream's clients).
func WithGatewayTimeout(d time.Duration) Option { return func(s *settings) { s.gatewayTimeout = d } }

// WithHTTPTransport carries the requests to the router in gateway and direct
// modes: give one that trusts the private CA of an https Gateway or router
// URL (connect.TransportWithCA builds one; $SANDBOXTEST_ROUTER_CA names a CA
// file instead). The tunnel, plain http on 127.0.0.1, does not use it.
func WithHTTPTransport(tr *http.Transport) Option { return func(s *settings) { s.transport = tr } }

// routerNS is the namespace of the router: its own, else the sandboxes'.
func (s *settings) routerNS() string {
	if s.routerNamespace != "" {
		return s.routerNamespace
	}
	return s.namespace
}

func newSettings(opts []Option) (*settings, error) {
	s := &settings{
		namespace:    envOr("SANDBOXTEST_NAMESPACE", DefaultNamespace),
		readyTimeout: DefaultReadyTimeout,
		ttl:          DefaultTTL,
		keep:         keepFlagOrEnv(),
		labels:       map[string]string{},

		routerNamespace: os.Getenv("SANDBOXTEST_ROUTER_NAMESPACE"),
	}
	var err error
	if s.readyTimeout, err = envDuration("SANDBOXTEST_READY_TIMEOUT", DefaultReadyTimeout); err != nil {
		return nil, err
	}
	if s.ttl, err = envDuration("SANDBOXTEST_TTL", DefaultTTL); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(s)
	}
	switch s.keep {
	case KeepNever, KeepOnFailure, KeepAlways:
	default:
		return nil, errorf("keep policy %q is not one of never, onfailure, always (check -sandboxtest.keep and SANDBOXTEST_KEEP)", s.keep)
	}
	return s, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if secs, err2 := strconv.Atoi(v); err2 == nil {
			return time.Duration(secs) * time.Second, nil
		}
		return 0, errorf("%s=%q is not a duration (like 90s or 5m)", name, v)
	}
	return d, nil
}
