package connect

import (
	"context"
	"errors"
	"fmt"
	"net"
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
)

// GatewayOptions names the Gateway in front of the router.
type GatewayOptions struct {
	// Namespace of the Gateway. Default "default".
	Namespace string
	// Name of the Gateway. Required.
	Name string
	// Scheme of the URL. Default: from the first listener's protocol
	// (HTTPS and TLS → https, anything else → http).
	Scheme string
	// ReadyTimeout bounds the wait for status.addresses. Default 60s.
	ReadyTimeout time.Duration
}

func (o GatewayOptions) withDefaults() GatewayOptions {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	return o
}

// gatewayPoll is how often Gateway looks at the Gateway's status.
const gatewayPoll = 250 * time.Millisecond

// Gateway waits, within ReadyTimeout, until the Gateway has an address in
// its status, and returns a connection to scheme://address[:port] built
// from the first address and the first listener (the port is left out when
// it is the scheme's default).
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
	last := "not read yet"
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
		default:
			if len(g.Status.Addresses) > 0 {
				u, l, err := gatewayURL(g, o.Scheme)
				if err != nil {
					return nil, err
				}
				return &gatewayConn{url: u, desc: fmt.Sprintf("gateway %s/%s at %s (listener %s, %s port %d; address %s)",
					o.Namespace, o.Name, u, l.Name, l.Protocol, l.Port, g.Status.Addresses[0].Value)}, nil
			}
			last = gatewayState(g)
		}
		select {
		case <-ctx.Done():
			what := "timed out after " + o.ReadyTimeout.String()
			if !errors.Is(context.Cause(ctx), errSetupTimeout) {
				what = context.Cause(ctx).Error()
			}
			return nil, fmt.Errorf("sandboxtest: Gateway %s/%s has no address: %s while waiting for status.addresses (last state: %s); "+
				"check: kubectl -n %s describe gateway %s", o.Namespace, o.Name, what, last, o.Namespace, o.Name)
		case <-time.After(gatewayPoll):
		}
	}
}

// gatewayURL builds the router URL from a Gateway's first address and first listener.
func gatewayURL(g *gwv1.Gateway, scheme string) (string, gwv1.Listener, error) {
	if len(g.Spec.Listeners) == 0 {
		return "", gwv1.Listener{}, fmt.Errorf("sandboxtest: Gateway %s/%s has no listeners", g.Namespace, g.Name)
	}
	l := g.Spec.Listeners[0]
	if scheme == "" {
		scheme = "http"
		if l.Protocol == gwv1.HTTPSProtocolType || l.Protocol == gwv1.TLSProtocolType {
			scheme = "https"
		}
	}
	host := strings.TrimSpace(g.Status.Addresses[0].Value)
	if host == "" {
		return "", l, fmt.Errorf("sandboxtest: Gateway %s/%s has an empty address in its status", g.Namespace, g.Name)
	}
	port := int(l.Port)
	if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) || port == 0 {
		if strings.Contains(host, ":") { // IPv6
			host = "[" + host + "]"
		}
	} else {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return (&url.URL{Scheme: scheme, Host: host}).String(), l, nil
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

type gatewayConn struct{ url, desc string }

func (g *gatewayConn) URL() string      { return g.url }
func (g *gatewayConn) Mode() Mode       { return ModeGateway }
func (g *gatewayConn) Describe() string { return g.desc }
func (g *gatewayConn) Close() error     { return nil }
