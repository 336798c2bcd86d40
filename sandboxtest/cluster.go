package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
)

// cluster is what every sandbox of this process shares: the API clients,
// the connection to the router and the runtime client over it.
type cluster struct {
	cfg         *rest.Config
	contextName string
	clients     *kube.Clients
	conn        connect.Conn
	choice      connect.Choice
	runtime     *runtime.Client
	leases      *kube.LeaseRenewer // renews the claims of this process's sandboxes

	detachedMu sync.Mutex
	detached   map[*Sandbox]bool // NewDetached's sandboxes not deleted yet; Main deletes the idle ones
}

// setDetached records sb as detached (on) or not.
func (c *cluster) setDetached(sb *Sandbox, on bool) {
	c.detachedMu.Lock()
	defer c.detachedMu.Unlock()
	if !on {
		delete(c.detached, sb)
		return
	}
	if c.detached == nil {
		c.detached = map[*Sandbox]bool{}
	}
	c.detached[sb] = true
}

func (c *cluster) isDetached(sb *Sandbox) bool {
	c.detachedMu.Lock()
	defer c.detachedMu.Unlock()
	return c.detached[sb]
}

// detachedSandboxes returns the detached sandboxes of every cluster this
// process has connected to.
func detachedSandboxes() []*Sandbox {
	clustersMu.Lock()
	defer clustersMu.Unlock()
	var all []*Sandbox
	for _, c := range clusters {
		c.detachedMu.Lock()
		for sb := range c.detached {
			all = append(all, sb)
		}
		c.detachedMu.Unlock()
	}
	return all
}

var (
	runIDOnce sync.Once
	runID     string

	clustersMu sync.Mutex
	clusters   = map[string]*cluster{} // by API server host, namespace, router namespace and transport
)

// RunID identifies this test binary's run on every claim it makes
// (label sandboxtest.io/run-id): $SANDBOXTEST_RUN_ID, else generated.
func RunID() string {
	runIDOnce.Do(func() {
		if v := os.Getenv("SANDBOXTEST_RUN_ID"); v != "" {
			runID = v
			return
		}
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		runID = time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
	})
	return runID
}

// loadRestConfig reads the kubeconfig the way kubectl does ($KUBECONFIG,
// then ~/.kube/config) and returns its current context's name.
func loadRestConfig() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", err
	}
	raw, _ := cc.RawConfig()
	return cfg, raw.CurrentContext, nil
}

// getCluster returns the process's shared cluster state for s, connecting
// once; a failure is not cached, so a later test tries again.
func getCluster(ctx context.Context, s *settings, logf func(string, ...any)) (*cluster, error) {
	cfg, contextName := s.restConfig, ""
	if cfg == nil {
		var err error
		if cfg, contextName, err = loadRestConfig(); err != nil {
			return nil, &UnavailableError{Err: err}
		}
	}
	key := cfg.Host + "|" + s.namespace
	key += fmt.Sprintf("|%s|%p", s.routerNS(), s.transport)
	clustersMu.Lock()
	defer clustersMu.Unlock()
	if c, ok := clusters[key]; ok {
		return c, nil
	}
	if err := kube.CheckReachable(ctx, cfg); err != nil {
		return nil, &UnavailableError{Err: err}
	}
	clients, err := kube.NewClients(cfg)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	conn, choice, err := connect.Shared(ctx, cfg, connect.AutoOptions{ContextName: contextName, Namespace: s.namespace,
		RouterNamespace: s.routerNS(), Transport: s.transport, Gateway: connect.GatewayOptions{ReadyTimeout: s.gatewayTimeout},
		Tunnel: connect.TunnelOptions{Log: tunnelLog}}) // quiet-aware; outlives the test

	if err != nil {
		return nil, err
	}
	logf("sandboxtest: connected to the router by %s (%s): %s in %s", choice.Mode, choice.Reason, conn.Describe(), time.Since(start).Round(time.Millisecond))
	c := &cluster{
		cfg: cfg, contextName: contextName, clients: clients, conn: conn, choice: choice,
		runtime: &runtime.Client{BaseURL: conn.URL, HTTP: routerClient(conn),
			WaitRouter: func(ctx context.Context) error { return connect.WaitRouter(ctx, conn) }},
		leases: &kube.LeaseRenewer{Clients: clients, Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "sandboxtest: "+format+"\n", args...)
		}},
	}
	clusters[key] = c
	return c, nil
}

func (c *cluster) String() string { return fmt.Sprintf("%s (%s)", c.cfg.Host, c.choice.Mode) }

// routerClient is the HTTP client for a connection that needs its own
// transport (https with a private CA), else nil: the runtime client's own.
// Like that one, it does not follow redirects.
func routerClient(conn connect.Conn) *http.Client {
	tr := conn.Transport()
	if tr == nil {
		return nil
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
