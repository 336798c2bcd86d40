package connect

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

func TestChoose(t *testing.T) {
	localNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "sandboxtest-node", Labels: map[string]string{kube.LocalNodeLabel: "true"}}}
	kindNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kind-control-plane"}, Spec: corev1.NodeSpec{ProviderID: "kind://docker/kind/kind-control-plane"}}
	otherNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gke-node-1"}, Spec: corev1.NodeSpec{ProviderID: "gce://proj/zone/gke-node-1"}}
	gateway := func(ns, name string, labelled bool) *gwv1.Gateway {
		g := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		if labelled {
			g.Labels = map[string]string{kube.LabelGateway: "true"}
		}
		return g
	}
	ciGateway := gateway("default", "ci-gw", true)

	for _, tc := range []struct {
		name     string
		env      env
		context  string
		ns       string
		nodes    []runtime.Object
		gateways []runtime.Object

		mode    Mode
		reason  string // the exact Reason
		url     string // direct target
		gwNS    string // gateway target
		gwName  string
		tunnNS  string // tunnel target namespace
		wantErr string
	}{
		// 1. SANDBOXTEST_API_URL.
		{name: "api url", env: env{"SANDBOXTEST_API_URL": "http://router.example:8080/"}, nodes: []runtime.Object{kindNode},
			mode: ModeDirect, reason: "SANDBOXTEST_API_URL=http://router.example:8080 is set", url: "http://router.example:8080"},
		{name: "api url beats gateway", env: env{"SANDBOXTEST_API_URL": "https://r.example", "SANDBOXTEST_GATEWAY": "gw"},
			mode: ModeDirect, reason: "SANDBOXTEST_API_URL=https://r.example is set; it takes precedence over SANDBOXTEST_GATEWAY=gw", url: "https://r.example"},
		{name: "api url with mode direct", env: env{"SANDBOXTEST_API_URL": "http://r:8080", "SANDBOXTEST_MODE": "direct"},
			mode: ModeDirect, reason: "SANDBOXTEST_API_URL=http://r:8080 is set and SANDBOXTEST_MODE=direct", url: "http://r:8080"},
		{name: "api url invalid", env: env{"SANDBOXTEST_API_URL": "router:8080"},
			wantErr: `sandboxtest: router URL "router:8080" has scheme "router", not http or https; want the router's base URL, e.g. http://sandbox-router.example:8080 (from SANDBOXTEST_API_URL)`},
		{name: "api url contradicted by mode", env: env{"SANDBOXTEST_API_URL": "http://r:8080", "SANDBOXTEST_MODE": "tunnel"},
			wantErr: "sandboxtest: SANDBOXTEST_MODE=tunnel contradicts SANDBOXTEST_API_URL=http://r:8080; unset one of them"},

		// 2. SANDBOXTEST_GATEWAY.
		{name: "gateway name", env: env{"SANDBOXTEST_GATEWAY": "my-gw"}, ns: "team", nodes: []runtime.Object{kindNode},
			mode: ModeGateway, reason: "SANDBOXTEST_GATEWAY=my-gw is set", gwNS: "team", gwName: "my-gw"},
		{name: "gateway ns/name", env: env{"SANDBOXTEST_GATEWAY": "infra/edge", "SANDBOXTEST_MODE": "gateway"},
			mode: ModeGateway, reason: "SANDBOXTEST_GATEWAY=infra/edge is set", gwNS: "infra", gwName: "edge"},
		{name: "gateway malformed", env: env{"SANDBOXTEST_GATEWAY": "a/b/c"},
			wantErr: `sandboxtest: SANDBOXTEST_GATEWAY="a/b/c" is not [namespace/]name, e.g. SANDBOXTEST_GATEWAY=default/sandbox-gateway`},
		{name: "gateway contradicted by mode", env: env{"SANDBOXTEST_GATEWAY": "gw", "SANDBOXTEST_MODE": "direct"},
			wantErr: "sandboxtest: SANDBOXTEST_MODE=direct contradicts SANDBOXTEST_GATEWAY=gw; unset one of them"},

		// 3. SANDBOXTEST_MODE.
		{name: "mode tunnel beats CI gateway", env: env{"SANDBOXTEST_MODE": "tunnel", "CI": "true"}, nodes: []runtime.Object{otherNode}, gateways: []runtime.Object{ciGateway},
			mode: ModeTunnel, reason: "SANDBOXTEST_MODE=tunnel", tunnNS: "default"},
		{name: "mode gateway finds the labelled one", env: env{"SANDBOXTEST_MODE": "gateway"}, nodes: []runtime.Object{kindNode},
			gateways: []runtime.Object{gateway("default", "plain", false), gateway("default", "b-gw", true), gateway("default", "a-gw", true), gateway("other", "elsewhere", true)},
			mode:     ModeGateway, reason: "SANDBOXTEST_MODE=gateway and Gateway default/a-gw is labelled sandboxtest.io/gateway (first by name of 2: a-gw, b-gw)",
			gwNS: "default", gwName: "a-gw"},
		{name: "mode gateway without a labelled one", env: env{"SANDBOXTEST_MODE": "gateway"}, gateways: []runtime.Object{gateway("default", "plain", false)},
			wantErr: "sandboxtest: SANDBOXTEST_MODE=gateway but no Gateway in namespace default is labelled sandboxtest.io/gateway; " +
				"set SANDBOXTEST_GATEWAY=[namespace/]name or label one: kubectl -n default label gateway NAME sandboxtest.io/gateway=true"},
		{name: "mode direct without url", env: env{"SANDBOXTEST_MODE": "direct"},
			wantErr: "sandboxtest: SANDBOXTEST_MODE=direct needs SANDBOXTEST_API_URL, the router's base URL; set it, e.g. SANDBOXTEST_API_URL=http://sandbox-router.example:8080"},
		{name: "mode unknown", env: env{"SANDBOXTEST_MODE": "teleport", "SANDBOXTEST_API_URL": "http://r:8080"},
			wantErr: `sandboxtest: SANDBOXTEST_MODE="teleport" is not a mode; valid modes: tunnel, gateway, direct (or unset it to choose automatically)`},
		{name: "mode is case-insensitive", env: env{"SANDBOXTEST_MODE": " Tunnel "},
			mode: ModeTunnel, reason: "SANDBOXTEST_MODE=tunnel", tunnNS: "default"},

		// 4. Kind.
		{name: "kind context beats CI gateway", env: env{"CI": "true"}, context: "kind-dev", nodes: []runtime.Object{otherNode}, gateways: []runtime.Object{ciGateway},
			mode: ModeTunnel, reason: "Kind cluster: kube context kind-dev is a Kind context", tunnNS: "default"},
		{name: "kind node", nodes: []runtime.Object{kindNode}, context: "ci",
			mode: ModeTunnel, reason: "Kind cluster: node kind-control-plane has providerID kind://docker/kind/kind-control-plane", tunnNS: "default"},

		// 5. CI with a labelled Gateway.
		{name: "CI gateway", env: env{"CI": "true"}, nodes: []runtime.Object{otherNode}, gateways: []runtime.Object{ciGateway},
			mode: ModeGateway, reason: "CI is set and Gateway default/ci-gw is labelled sandboxtest.io/gateway", gwNS: "default", gwName: "ci-gw"},
		{name: "CI gateway beats local cluster", env: env{"CI": "1"}, nodes: []runtime.Object{localNode}, gateways: []runtime.Object{ciGateway},
			mode: ModeGateway, reason: "CI is set and Gateway default/ci-gw is labelled sandboxtest.io/gateway", gwNS: "default", gwName: "ci-gw"},
		{name: "CI false ignores gateway", env: env{"CI": "false"}, nodes: []runtime.Object{otherNode}, gateways: []runtime.Object{ciGateway},
			mode: ModeTunnel, reason: "the default: no SANDBOXTEST_API_URL, SANDBOXTEST_GATEWAY or SANDBOXTEST_MODE; CI is not set; neither the local process node nor Kind nodes found", tunnNS: "default"},
		{name: "CI without labelled gateway in the namespace", env: env{"CI": "true"}, ns: "team", nodes: []runtime.Object{otherNode},
			gateways: []runtime.Object{ciGateway, gateway("team", "plain", false)},
			mode:     ModeTunnel, reason: "the default: no SANDBOXTEST_API_URL, SANDBOXTEST_GATEWAY or SANDBOXTEST_MODE; CI is set but no Gateway in namespace team is labelled sandboxtest.io/gateway; neither the local process node nor Kind nodes found", tunnNS: "team"},

		// 6. The local cluster.
		{name: "local cluster", nodes: []runtime.Object{localNode},
			mode: ModeTunnel, reason: "sandboxtest local cluster: node sandboxtest-node is the sandboxtest local process node; CI is not set", tunnNS: "default"},

		// 7. Anything else.
		{name: "other cluster", nodes: []runtime.Object{otherNode}, ns: "team",
			mode: ModeTunnel, reason: "the default: no SANDBOXTEST_API_URL, SANDBOXTEST_GATEWAY or SANDBOXTEST_MODE; CI is not set; neither the local process node nor Kind nodes found", tunnNS: "team"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := AutoOptions{Env: tc.env.get, ContextName: tc.context, Namespace: tc.ns,
				Kube: kubefake.NewClientset(tc.nodes...), GatewayAPI: fakeGateways(t, tc.gateways...)}
			c, tgt, err := Choose(context.Background(), nil, o)
			if tc.wantErr != "" {
				assert.Error(t, err, tc.wantErr)
				return
			}
			assert.NilError(t, err)
			assert.Check(t, is.Equal(c.Mode, tc.mode))
			assert.Check(t, is.Equal(c.Reason, tc.reason))
			switch tc.mode {
			case ModeDirect:
				assert.Check(t, is.Equal(tgt.URL, tc.url))
			case ModeGateway:
				assert.Check(t, is.Equal(tgt.Gateway.Namespace, tc.gwNS))
				assert.Check(t, is.Equal(tgt.Gateway.Name, tc.gwName))
			case ModeTunnel:
				assert.Check(t, is.Equal(tgt.Tunnel.Namespace, tc.tunnNS))
				assert.Check(t, is.Equal(tgt.Tunnel.Service, kube.RouterService))
				assert.Check(t, is.Equal(tgt.Tunnel.Port, kube.RouterPort))
			}
		})
	}
}

// fakeGateways is a fake Gateway API clientset holding the Gateways. They
// are created through the v1 client: given to the constructor, they would
// be filed under v1beta1 (whose types alias v1's), where a v1 List misses
// them; and NewClientset's field-managed tracker cannot convert Gateway API
// types at all, hence the deprecated NewSimpleClientset.
func fakeGateways(t *testing.T, objs ...runtime.Object) *gwfake.Clientset {
	t.Helper()
	cs := gwfake.NewSimpleClientset() //nolint:staticcheck // see above
	for _, o := range objs {
		g := o.(*gwv1.Gateway)
		_, err := cs.GatewayV1().Gateways(g.Namespace).Create(context.Background(), g, metav1.CreateOptions{})
		assert.NilError(t, err)
	}
	return cs
}

func TestChooseWithoutConfig(t *testing.T) {
	// Direct needs no cluster at all.
	c, tgt, err := Choose(context.Background(), nil, AutoOptions{Env: env{"SANDBOXTEST_API_URL": "http://r:8080"}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(c.Mode, ModeDirect))
	assert.Check(t, is.Equal(tgt.URL, "http://r:8080"))

	_, _, err = Choose(context.Background(), nil, AutoOptions{Env: env{}.get})
	assert.Check(t, is.ErrorContains(err, "no Kubernetes config to choose a connection with"))
}

func TestChooseKeepsOptions(t *testing.T) {
	o := AutoOptions{Env: env{"SANDBOXTEST_GATEWAY": "gw"}.get,
		Gateway: GatewayOptions{Scheme: "https", ReadyTimeout: 7}, Tunnel: TunnelOptions{Port: 9000}}
	_, tgt, err := Choose(context.Background(), nil, o)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.Scheme, "https"))
	assert.Check(t, is.Equal(tgt.Gateway.ReadyTimeout, o.Gateway.ReadyTimeout))

	o.Env = env{"SANDBOXTEST_MODE": "tunnel"}.get
	o.Namespace = "team"
	_, tgt, err = Choose(context.Background(), nil, o)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Tunnel.Port, 9000))
	assert.Check(t, is.Equal(tgt.Tunnel.Namespace, "team"))
}

// TestAutoOnTheLocalCluster runs the real decision against the local cluster.
func TestAutoOnTheLocalCluster(t *testing.T) {
	tc := cluster(t)
	conn, c, err := Auto(context.Background(), tc.cfg, AutoOptions{Env: env{}.get, Tunnel: TunnelOptions{Log: t.Logf}})
	assert.NilError(t, err)
	defer conn.Close()
	t.Logf("chose %s: %s", c, conn.Describe())
	assert.Check(t, is.Equal(c.Mode, ModeTunnel))
	assert.Check(t, is.Contains(c.Reason, "sandboxtest local cluster"))
	assert.Check(t, is.Equal(conn.Mode(), ModeTunnel))
	code, _, err := get(conn.URL(), "/healthz")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK))

	// In CI, the labelled Gateway wins.
	routerGateway(t)
	conn2, c, err := Auto(context.Background(), tc.cfg, AutoOptions{Env: env{"CI": "true"}.get})
	assert.NilError(t, err)
	defer conn2.Close()
	t.Logf("chose %s: %s", c, conn2.Describe())
	assert.Check(t, is.Equal(c.Reason, "CI is set and Gateway default/router-gw is labelled sandboxtest.io/gateway"))
	assert.Check(t, is.Equal(conn2.Mode(), ModeGateway))
	code, _, err = get(conn2.URL(), "/healthz")
	assert.NilError(t, err)
	assert.Check(t, is.Equal(code, http.StatusOK))

	// A chosen mode that cannot connect says why it was chosen.
	_, _, err = Auto(context.Background(), tc.cfg, AutoOptions{Env: env{"SANDBOXTEST_MODE": "tunnel"}.get, Namespace: "nowhere"})
	assert.Check(t, is.ErrorContains(err, "sandboxtest: sandbox-router-svc not found in namespace nowhere; run: sandboxtest-setup deploy --namespace nowhere, "+
		"or use the sandbox-router-svc in namespace default")) // and maybe routers, when TestRouterInItsOwnNamespace ran first
	assert.Check(t, is.ErrorContains(err, ": SANDBOXTEST_ROUTER_NAMESPACE=default (mode tunnel chosen because SANDBOXTEST_MODE=tunnel)"))
	assert.Check(t, errors.Is(err, ErrRouterNotFound))
}

// TestChooseRouterNamespace: the router (and its Gateways) may live in a
// namespace of their own; the sandboxes' namespace stays the caller's.
func TestChooseRouterNamespace(t *testing.T) {
	otherNode := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gke-node-1"}, Spec: corev1.NodeSpec{ProviderID: "gce://proj/zone/gke-node-1"}}
	choose := func(o AutoOptions, objs ...runtime.Object) (Choice, Target, error) {
		t.Helper()
		o.Kube = kubefake.NewClientset(otherNode)
		o.GatewayAPI = fakeGateways(t, objs...)
		return Choose(context.Background(), nil, o)
	}

	// From the variable.
	_, tgt, err := choose(AutoOptions{Namespace: "team", Env: env{"SANDBOXTEST_ROUTER_NAMESPACE": "agent-sandbox-system"}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Tunnel.Namespace, "agent-sandbox-system"))
	assert.Check(t, is.Equal(tgt.Tunnel.SandboxNamespace, "team"))

	// The option wins over the variable; an explicit Tunnel.Namespace over both.
	_, tgt, err = choose(AutoOptions{Namespace: "team", RouterNamespace: "routers", Env: env{"SANDBOXTEST_ROUTER_NAMESPACE": "agent-sandbox-system"}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Tunnel.Namespace, "routers"))
	_, tgt, err = choose(AutoOptions{Namespace: "team", RouterNamespace: "routers", Tunnel: TunnelOptions{Namespace: "mine"}, Env: env{}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Tunnel.Namespace, "mine"))

	// Unset: the sandboxes' namespace.
	_, tgt, err = choose(AutoOptions{Namespace: "team", Env: env{}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Tunnel.Namespace, "team"))
	assert.Check(t, is.Equal(tgt.Tunnel.SandboxNamespace, "team"))

	// Gateways: a bare name and the CI label are looked for in the router namespace.
	_, tgt, err = choose(AutoOptions{Namespace: "team", RouterNamespace: "routers", Env: env{"SANDBOXTEST_GATEWAY": "edge"}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.Namespace, "routers"))
	assert.Check(t, is.Equal(tgt.Gateway.RouterNamespace, "routers"))
	labelled := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "ci-gw", Namespace: "routers", Labels: map[string]string{kube.LabelGateway: "true"}}}
	c, tgt, err := choose(AutoOptions{Namespace: "team", RouterNamespace: "routers", Env: env{"CI": "true"}.get}, labelled)
	assert.NilError(t, err)
	assert.Check(t, is.Equal(c.Reason, "CI is set and Gateway routers/ci-gw is labelled sandboxtest.io/gateway"))
	assert.Check(t, is.Equal(tgt.Gateway.Namespace, "routers"))
	// A Gateway elsewhere still names the router namespace for its route.
	_, tgt, err = choose(AutoOptions{Namespace: "team", RouterNamespace: "routers", Env: env{"SANDBOXTEST_GATEWAY": "infra/edge"}.get})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.Namespace, "infra"))
	assert.Check(t, is.Equal(tgt.Gateway.RouterNamespace, "routers"))
}

func TestChooseGatewayTimeout(t *testing.T) {
	choose := func(o AutoOptions, e env) (Target, error) {
		t.Helper()
		e["SANDBOXTEST_GATEWAY"] = "gw"
		o.Env = e.get
		_, tgt, err := Choose(context.Background(), nil, o)
		return tgt, err
	}
	tgt, err := choose(AutoOptions{}, env{})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.ReadyTimeout, DefaultGatewayTimeout))
	assert.Check(t, is.Equal(DefaultGatewayTimeout, 3*time.Minute), "upstream's clients wait 180 s")

	tgt, err = choose(AutoOptions{}, env{"SANDBOXTEST_GATEWAY_TIMEOUT": "90s"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.ReadyTimeout, 90*time.Second))
	tgt, err = choose(AutoOptions{}, env{"SANDBOXTEST_GATEWAY_TIMEOUT": "45"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.ReadyTimeout, 45*time.Second))
	tgt, err = choose(AutoOptions{Gateway: GatewayOptions{ReadyTimeout: time.Second}}, env{"SANDBOXTEST_GATEWAY_TIMEOUT": "45"})
	assert.NilError(t, err)
	assert.Check(t, is.Equal(tgt.Gateway.ReadyTimeout, time.Second), "the option wins over the variable")

	_, err = choose(AutoOptions{}, env{"SANDBOXTEST_GATEWAY_TIMEOUT": "soon"})
	assert.Check(t, is.Error(err, `sandboxtest: SANDBOXTEST_GATEWAY_TIMEOUT="soon" is not a duration; write it like 90s or 5m`))
	_, err = choose(AutoOptions{}, env{"SANDBOXTEST_GATEWAY_TIMEOUT": "-1s"})
	assert.Check(t, is.ErrorContains(err, "is not a positive duration"))
}
