package connect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/agentsandbox/go-sandboxtest/internal/envflag"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// AutoOptions configures [Choose], [Auto] and [Shared].
type AutoOptions struct {
	// Env reads environment variables. Default os.Getenv.
	Env func(string) string
	// ContextName is the kubeconfig context in use; a kind-* context means Kind.
	ContextName string
	// Namespace of the sandboxes. Default "default".
	Namespace string
	// RouterNamespace is where the router Service, its pods and the
	// Gateways in front of it are looked for, unless Tunnel.Namespace or
	// SANDBOXTEST_GATEWAY says otherwise. Default $SANDBOXTEST_ROUTER_NAMESPACE,
	// else Namespace. Requests still name the sandbox's own namespace
	// (X-Sandbox-Namespace).
	RouterNamespace string
	// Transport carries the requests to the router in direct and gateway
	// modes (Gateway.Transport, when set, wins in gateway mode): give one
	// that trusts the private CA of an https URL. Default: one that trusts
	// the CA in $SANDBOXTEST_ROUTER_CA if set, else nil (Go's default).
	// Tunnel mode ignores it: the tunnel is plain http on 127.0.0.1.
	Transport *http.Transport
	// Tunnel configures a tunnel, when one is chosen.
	Tunnel TunnelOptions
	// Gateway configures a gateway connection (Scheme, ReadyTimeout,
	// Transport), when one is chosen; its Namespace, Name and RouterNamespace
	// come from the choice. A zero ReadyTimeout is $SANDBOXTEST_GATEWAY_TIMEOUT,
	// else DefaultGatewayTimeout.
	Gateway GatewayOptions
	// Kube and GatewayAPI are the clients Choose asks; default: built from
	// the REST config. Tests pass fakes.
	Kube       kubernetes.Interface
	GatewayAPI gwclient.Interface
}

// Choice is the chosen mode and why, worded for a log line.
type Choice struct {
	Mode   Mode
	Reason string
}

func (c Choice) String() string { return string(c.Mode) + " (" + c.Reason + ")" }

// Target is what the chosen mode connects to: URL (and Transport) for
// direct, Gateway for gateway, Tunnel for tunnel (defaults filled in).
type Target struct {
	URL       string
	Transport *http.Transport
	Gateway   GatewayOptions
	Tunnel    TunnelOptions
}

// key identifies the target for sharing.
func (t Target) key(m Mode) string {
	switch m {
	case ModeDirect:
		return fmt.Sprintf("direct %s %p", t.URL, t.Transport)
	case ModeGateway:
		return fmt.Sprintf("gateway %s/%s %s router %s %p", t.Gateway.Namespace, t.Gateway.Name, t.Gateway.Scheme, t.Gateway.RouterNamespace, t.Gateway.Transport)
	default:
		return fmt.Sprintf("tunnel %s/%s:%d", t.Tunnel.Namespace, t.Tunnel.Service, t.Tunnel.Port)
	}
}

// Choose decides how to reach the router, in this order:
//
//  1. SANDBOXTEST_API_URL set → direct to it.
//  2. SANDBOXTEST_GATEWAY=[namespace/]name → that Gateway (namespace
//     default: the router namespace).
//  3. SANDBOXTEST_MODE=tunnel|gateway|direct forces the mode: gateway
//     without SANDBOXTEST_GATEWAY uses the Gateway labelled
//     sandboxtest.io/gateway in the router namespace; direct needs
//     SANDBOXTEST_API_URL. A mode that contradicts rule 1 or 2 is an error,
//     as is an unknown mode.
//  4. A Kind cluster (context kind-*, or nodes with providerID kind://) → tunnel.
//  5. CI set (not "false" or "0") and a Gateway labelled sandboxtest.io/gateway
//     in the router namespace → that Gateway.
//  6. The sandboxtest local cluster → tunnel.
//  7. Otherwise → tunnel.
//
// It only reads: the environment, nodes and Gateways.
func Choose(ctx context.Context, cfg *rest.Config, o AutoOptions) (Choice, Target, error) {
	env := o.Env
	if env == nil {
		env = os.Getenv
	}
	sandboxNS := o.Namespace
	if sandboxNS == "" {
		sandboxNS = "default"
	}
	ns := firstOf(o.RouterNamespace, strings.TrimSpace(env(EnvRouterNamespace)), sandboxNS) // the router's
	gatewayTimeout, err := parseTimeout(env, EnvGatewayTimeout)
	if err != nil {
		return Choice{}, Target{}, err
	}
	tgt := Target{Tunnel: o.Tunnel, Gateway: o.Gateway}
	if tgt.Tunnel.Namespace == "" {
		tgt.Tunnel.Namespace = ns
	}
	if tgt.Tunnel.SandboxNamespace == "" {
		tgt.Tunnel.SandboxNamespace = sandboxNS
	}
	tgt.Tunnel = tgt.Tunnel.withDefaults()
	tgt.Tunnel.Log = o.Tunnel.Log // keep nil as nil; Tunnel fills it
	tunnel := func(reason string) (Choice, Target, error) {
		return Choice{ModeTunnel, reason}, Target{Tunnel: tgt.Tunnel}, nil
	}
	gateway := func(gns, name, reason string) (Choice, Target, error) {
		g := tgt.Gateway
		g.Namespace, g.Name, g.RouterNamespace = gns, name, ns
		if g.ReadyTimeout <= 0 {
			g.ReadyTimeout = gatewayTimeout
		}
		if g.Transport == nil {
			var err error
			if g.Transport, err = transport(env, o.Transport); err != nil {
				return Choice{}, Target{}, err
			}
		}
		return Choice{ModeGateway, reason}, Target{Gateway: g.withDefaults()}, nil
	}

	mode := Mode(strings.ToLower(strings.TrimSpace(env(EnvMode))))
	if mode != "" && mode != ModeTunnel && mode != ModeGateway && mode != ModeDirect {
		return Choice{}, Target{}, fmt.Errorf("sandboxtest: %s=%q is not a mode; valid modes: %s, %s, %s (or unset it to choose automatically)",
			EnvMode, env(EnvMode), ModeTunnel, ModeGateway, ModeDirect)
	}
	apiURL := strings.TrimSpace(env(EnvAPIURL))
	gwEnv := strings.TrimSpace(env(EnvGateway))

	// 1. An explicit URL.
	if apiURL != "" {
		if mode != "" && mode != ModeDirect {
			return Choice{}, Target{}, conflict(mode, EnvAPIURL, apiURL)
		}
		u, err := checkURL(apiURL)
		if err != nil {
			return Choice{}, Target{}, fmt.Errorf("%w (from %s)", err, EnvAPIURL)
		}
		reason := EnvAPIURL + "=" + u + " is set"
		if mode == ModeDirect {
			reason += " and " + EnvMode + "=direct"
		}
		if gwEnv != "" {
			reason += "; it takes precedence over " + EnvGateway + "=" + gwEnv
		}
		tr, err := transport(env, o.Transport)
		if err != nil {
			return Choice{}, Target{}, err
		}
		return Choice{ModeDirect, reason}, Target{URL: u, Transport: tr}, nil
	}

	// 2. An explicit Gateway.
	if gwEnv != "" {
		if mode != "" && mode != ModeGateway {
			return Choice{}, Target{}, conflict(mode, EnvGateway, gwEnv)
		}
		gns, name, err := splitGateway(gwEnv, ns)
		if err != nil {
			return Choice{}, Target{}, err
		}
		return gateway(gns, name, EnvGateway+"="+gwEnv+" is set")
	}

	// 3. A forced mode.
	switch mode {
	case ModeTunnel:
		return tunnel(EnvMode + "=tunnel")
	case ModeDirect:
		return Choice{}, Target{}, fmt.Errorf("sandboxtest: %s=direct needs %s, the router's base URL; set it, e.g. %s=http://sandbox-router.example:8080",
			EnvMode, EnvAPIURL, EnvAPIURL)
	case ModeGateway:
		gw, err := gatewayClient(cfg, o)
		if err != nil {
			return Choice{}, Target{}, err
		}
		names, err := labelledGateways(ctx, gw, ns)
		if err != nil {
			return Choice{}, Target{}, fmt.Errorf("sandboxtest: %s=gateway: looking for a Gateway labelled %s in namespace %s: %w; set %s=[namespace/]name",
				EnvMode, kube.LabelGateway, ns, err, EnvGateway)
		}
		if len(names) == 0 {
			return Choice{}, Target{}, fmt.Errorf("sandboxtest: %s=gateway but no Gateway in namespace %s is labelled %s; "+
				"set %s=[namespace/]name or label one: kubectl -n %s label gateway NAME %s=true",
				EnvMode, ns, kube.LabelGateway, EnvGateway, ns, kube.LabelGateway)
		}
		return gateway(ns, names[0], fmt.Sprintf("%s=gateway and Gateway %s/%s is labelled %s%s", EnvMode, ns, names[0], kube.LabelGateway, others(names)))
	}

	// 4–7. Look at the cluster.
	cs, err := kubeClient(cfg, o)
	if err != nil {
		return Choice{}, Target{}, err
	}
	kind, why, err := kube.DetectCluster(ctx, cs, o.ContextName)
	if err != nil {
		// Without nodes, only the context name can tell Kind.
		if strings.HasPrefix(o.ContextName, "kind-") {
			kind, why = kube.ClusterKindKind, "kube context "+o.ContextName+" is a Kind context"
		} else {
			kind, why = kube.ClusterOther, "cluster kind unknown: listing nodes failed: "+err.Error()
		}
	}
	if kind == kube.ClusterKindKind {
		return tunnel("Kind cluster: " + why)
	}
	ci := envflag.IsCI(env(EnvCI))
	ciNote := EnvCI + " is not set"
	if ci {
		gw, err := gatewayClient(cfg, o)
		if err != nil {
			return Choice{}, Target{}, err
		}
		names, err := labelledGateways(ctx, gw, ns)
		switch {
		case err != nil:
			ciNote = fmt.Sprintf("%s is set but Gateways could not be listed (%v)", EnvCI, err)
		case len(names) > 0:
			return gateway(ns, names[0], fmt.Sprintf("%s is set and Gateway %s/%s is labelled %s%s", EnvCI, ns, names[0], kube.LabelGateway, others(names)))
		default:
			ciNote = fmt.Sprintf("%s is set but no Gateway in namespace %s is labelled %s", EnvCI, ns, kube.LabelGateway)
		}
	}
	if kind == kube.ClusterLocal {
		return tunnel("sandboxtest local cluster: " + why + "; " + ciNote)
	}
	return tunnel("the default: no " + EnvAPIURL + ", " + EnvGateway + " or " + EnvMode + "; " + ciNote + "; " + why)
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseTimeout reads a duration variable: a Go duration (90s, 3m) or whole
// seconds; 0 when unset.
func parseTimeout(env func(string) string, name string) (time.Duration, error) {
	v := strings.TrimSpace(env(name))
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err2 := strconv.Atoi(v)
		if err2 != nil {
			return 0, fmt.Errorf("sandboxtest: %s=%q is not a duration; write it like 90s or 5m", name, v)
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 {
		return 0, fmt.Errorf("sandboxtest: %s=%q is not a positive duration; write it like 90s or 5m", name, v)
	}
	return d, nil
}

// transport is the caller's transport, else one trusting $SANDBOXTEST_ROUTER_CA, else nil.
func transport(env func(string) string, given *http.Transport) (*http.Transport, error) {
	if given != nil {
		return given, nil
	}
	path := strings.TrimSpace(env(EnvRouterCA))
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sandboxtest: %s: %w; point it at the PEM file of the CA that signed the router's certificate", EnvRouterCA, err)
	}
	tr, err := TransportWithCA(pem)
	if err != nil {
		return nil, fmt.Errorf("%w (%s=%s)", err, EnvRouterCA, path)
	}
	return tr, nil
}

func conflict(mode Mode, name, value string) error {
	return fmt.Errorf("sandboxtest: %s=%s contradicts %s=%s; unset one of them", EnvMode, mode, name, value)
}

// splitGateway parses [namespace/]name.
func splitGateway(s, defaultNS string) (string, string, error) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return defaultNS, parts[0], nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("sandboxtest: %s=%q is not [namespace/]name, e.g. %s=default/sandbox-gateway", EnvGateway, s, EnvGateway)
}

// InCI reports whether the CI variable says this is a CI run: a true
// boolean (strconv.ParseBool), or a value that is no boolean at all, as
// some CI systems set it to their name. Every part of sandboxtest reads CI
// this way.
func InCI() bool { return envflag.CI() }

// labelledGateways names the Gateways in ns labelled kube.LabelGateway (not "false"), sorted.
func labelledGateways(ctx context.Context, gw gwclient.Interface, ns string) ([]string, error) {
	list, err := gw.GatewayV1().Gateways(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelGateway})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, g := range list.Items {
		if v, ok := g.Labels[kube.LabelGateway]; ok && v != "false" {
			names = append(names, g.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func others(names []string) string {
	if len(names) < 2 {
		return ""
	}
	return fmt.Sprintf(" (first by name of %d: %s)", len(names), strings.Join(names, ", "))
}

func kubeClient(cfg *rest.Config, o AutoOptions) (kubernetes.Interface, error) {
	if o.Kube != nil {
		return o.Kube, nil
	}
	if cfg == nil {
		return nil, noConfig()
	}
	return kubernetes.NewForConfig(cfg)
}

func gatewayClient(cfg *rest.Config, o AutoOptions) (gwclient.Interface, error) {
	if o.GatewayAPI != nil {
		return o.GatewayAPI, nil
	}
	if cfg == nil {
		return nil, noConfig()
	}
	return gwclient.NewForConfig(cfg)
}

func noConfig() error {
	return errors.New("sandboxtest: no Kubernetes config to choose a connection with; " +
		"point KUBECONFIG at a cluster, or set " + EnvAPIURL + " to the router's URL")
}

// Auto chooses a mode with [Choose] and opens that connection. Log the
// Choice: it says why this mode was taken.
func Auto(ctx context.Context, cfg *rest.Config, o AutoOptions) (Conn, Choice, error) {
	c, t, err := Choose(ctx, cfg, o)
	if err != nil {
		return nil, c, err
	}
	conn, err := open(ctx, cfg, o, c, t)
	if err != nil {
		return nil, c, fmt.Errorf("%w (mode %s chosen because %s)", err, c.Mode, c.Reason)
	}
	return conn, c, nil
}

// open opens the chosen connection.
func open(ctx context.Context, cfg *rest.Config, o AutoOptions, c Choice, t Target) (Conn, error) {
	switch c.Mode {
	case ModeDirect:
		u, err := checkURL(t.URL)
		if err != nil {
			return nil, err
		}
		return &directConn{url: u, transport: t.Transport}, nil
	case ModeGateway:
		if o.GatewayAPI != nil {
			return gatewayWith(ctx, o.GatewayAPI, t.Gateway)
		}
		return Gateway(ctx, cfg, t.Gateway)
	default:
		return Tunnel(ctx, cfg, t.Tunnel)
	}
}
