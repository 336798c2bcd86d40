package sandboxtest

import (
	"net/http"
	"os"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/envflag"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// Defaults for what Options and SANDBOXTEST_* variables do not set.
const (
	DefaultNamespace    = kube.DefaultNamespace
	DefaultReadyTimeout = 3 * time.Minute
	DefaultTTL          = 2 * time.Minute
	DefaultServerPort   = 8888
	DefaultCallTimeout  = 5 * time.Minute
	// keptFor is how long a kept sandbox (WithKeep) lives after its test.
	keptFor = 30 * time.Minute
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

	routerNamespace           string          // "" means namespace
	gatewayTimeout            time.Duration   // 0: connect's default or $SANDBOXTEST_GATEWAY_TIMEOUT
	transport                 *http.Transport // nil: the runtime client's own
	podLabels, podAnnotations map[string]string
	volumeClaimTemplates      []sandboxv1beta1.PersistentVolumeClaimTemplate
	callTimeout               time.Duration // of each call to the sandbox without WithCallTimeout
	callTimeoutSource         string        // where callTimeout came from, for the timeout's message
}

// Option configures New.
type Option func(*settings)

// WithNamespace sets the namespace of the template, pool and claim
// (default $SANDBOXTEST_NAMESPACE, else the kubeconfig context's namespace
// when WithRESTConfig is not given, else "default"; sandboxtest-setup's
// -n/--namespace follows the same order).
func WithNamespace(ns string) Option { return func(s *settings) { s.namespace = ns } }

// WithReadyTimeout bounds the wait for the sandbox to be Ready
// (default $SANDBOXTEST_READY_TIMEOUT, else 3m; never past the test's deadline).
func WithReadyTimeout(d time.Duration) Option { return func(s *settings) { s.readyTimeout = d } }

// WithTTL sets the claim's lease (default $SANDBOXTEST_TTL, else 2m): while
// the test process lives it moves the claim's shutdownTime to now + the TTL
// every quarter of it, so a sandbox lives as long as its test needs it, and
// the controller deletes it at most this long after the process was killed.
func WithTTL(d time.Duration) Option { return func(s *settings) { s.ttl = d } }

// WithServerPort is the port the sandbox's runtime server listens on
// (default: the template's container port named "runtime", else its first
// declared port, else 8888).
func WithServerPort(port int) Option { return func(s *settings) { s.serverPort = port } }

// WithKeep keeps the sandbox after the test (default: -sandboxtest.keep, $SANDBOXTEST_KEEP, else never).
func WithKeep(k Keep) Option { return func(s *settings) { s.keep = k } }

// WithRESTConfig uses cfg instead of the kubeconfig ($KUBECONFIG, ~/.kube/config).
func WithRESTConfig(cfg *rest.Config) Option { return func(s *settings) { s.restConfig = cfg } }

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

// WithPodLabels adds labels to the sandbox's pod (the claim's
// spec.additionalPodMetadata). The controller accepts only keys under its
// allowed label domains (by default sandbox.users.io, e.g.
// "sandbox.users.io/team"); any other makes New fail with a
// *TerminalError of Reason InvalidMetadata.
func WithPodLabels(l map[string]string) Option {
	return func(s *settings) {
		if s.podLabels == nil {
			s.podLabels = map[string]string{}
		}
		for k, v := range l {
			s.podLabels[k] = v
		}
	}
}

// WithPodAnnotations adds annotations to the sandbox's pod (the claim's
// spec.additionalPodMetadata). Keys under kubernetes.io, k8s.io and
// agents.x-k8s.io are refused by the controller: New fails with a
// *TerminalError of Reason InvalidMetadata.
func WithPodAnnotations(a map[string]string) Option {
	return func(s *settings) {
		if s.podAnnotations == nil {
			s.podAnnotations = map[string]string{}
		}
		for k, v := range a {
			s.podAnnotations[k] = v
		}
	}
}

// WithVolumeClaimTemplates gives the sandbox persistent volumes (the
// claim's spec.volumeClaimTemplates): for each template the controller
// creates the PVC <name>-<sandbox> and adds it to the pod as the volume
// <name>, which the template's container mounts with a volumeMount of that
// name. The SandboxTemplate must allow it (volumeClaimTemplatesPolicy
// Allowed or Overrides), else New fails with a *TerminalError of Reason
// VolumeClaimTemplatesError; the cluster needs a StorageClass that binds
// the PVCs. Such a claim always starts cold.
func WithVolumeClaimTemplates(templates ...sandboxv1beta1.PersistentVolumeClaimTemplate) Option {
	return func(s *settings) { s.volumeClaimTemplates = append(s.volumeClaimTemplates, templates...) }
}

// Environment switches sandboxtest reads, all with strconv.ParseBool's syntax.
var boolSwitches = []string{"SANDBOXTEST_REQUIRE", "SANDBOXTEST_QUIET", "SANDBOXTEST_UPDATE", "SANDBOXTEST_TRACING", "SANDBOXTEST_LOCAL", "SANDBOXTEST_REPORT"}

// envSwitch reads a boolean switch; a value that is not a boolean counts as
// def here, and New reports it (newSettings).
func envSwitch(name string, def bool) bool {
	v, _ := envflag.Bool(name, def)
	return v
}

func newSettings(opts []Option) (*settings, error) {
	s := &settings{
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
	if s.callTimeout, err = envDuration("SANDBOXTEST_CALL_TIMEOUT", DefaultCallTimeout); err != nil {
		return nil, err
	}
	s.callTimeoutSource = "the default; set SANDBOXTEST_CALL_TIMEOUT, or WithCallTimeout for one call"
	if os.Getenv("SANDBOXTEST_CALL_TIMEOUT") != "" {
		s.callTimeoutSource = "SANDBOXTEST_CALL_TIMEOUT; WithCallTimeout sets it for one call"
	}
	for _, name := range boolSwitches {
		if _, err := envflag.Bool(name, false); err != nil {
			return nil, errorf("%v", err)
		}
	}
	for _, o := range opts {
		o(s)
	}
	if s.namespace == "" {
		s.namespace = defaultNamespace(s.restConfig == nil)
	}
	switch s.keep {
	case KeepNever, KeepOnFailure, KeepAlways:
	default:
		return nil, errorf("keep policy %q is not one of never, onfailure, always (check -sandboxtest.keep and SANDBOXTEST_KEEP)", s.keep)
	}
	return s, nil
}

// defaultNamespace is the namespace without WithNamespace: the rule
// sandboxtest-setup follows too, the kubeconfig's context counting only when
// the kubeconfig is what New connects with.
func defaultNamespace(fromKubeconfig bool) string {
	contextNS := ""
	if fromKubeconfig {
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
		contextNS = kube.ContextNamespace(cc, "")
	}
	ns, _ := kube.ResolveNamespace("", contextNS)
	return ns
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
