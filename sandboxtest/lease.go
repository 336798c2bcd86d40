package sandboxtest

// Sandboxes that outlive one test. fixtures.Shared keeps a per-process pool
// of them; a suite rarely needs this file directly.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// Config is where and how New provisions for a set of options. fixtures
// read it to look at a template in the cluster before asking for a sandbox.
type Config struct {
	REST         *rest.Config // WithRESTConfig, else the kubeconfig ($KUBECONFIG, ~/.kube/config)
	Namespace    string
	ServerPort   int // 0: the template decides (see WithServerPort)
	ReadyTimeout time.Duration
	TTL          time.Duration // the claims' lease (WithTTL)
}

// ResolveConfig returns the configuration New would use with opts. A
// kubeconfig that cannot be loaded is an *UnavailableError, as in New.
func ResolveConfig(opts ...Option) (Config, error) {
	s, err := newSettings(opts)
	if err != nil {
		return Config{}, err
	}
	cfg := s.restConfig
	if cfg == nil {
		if cfg, _, err = loadRestConfig(); err != nil {
			return Config{}, &UnavailableError{Err: err}
		}
	}
	return Config{REST: cfg, Namespace: s.namespace, ServerPort: s.serverPort, ReadyTimeout: s.readyTimeout, TTL: s.ttl}, nil
}

// SkipOrFail reports err the way New does: it skips t when no cluster is
// reachable (an *UnavailableError), unless CI or SANDBOXTEST_REQUIRE=1 is
// set, and fails it otherwise.
func SkipOrFail(t TB, err error) {
	t.Helper()
	var u *UnavailableError
	if errors.As(err, &u) && !requireCluster() {
		t.Skipf("%v (set SANDBOXTEST_REQUIRE=1 to fail instead of skipping)", err)
	}
	t.Fatalf("%v", err)
}

// collectingTB is the TB a detached sandbox is provisioned with: it forwards
// to the test, but keeps the cleanups (the sandbox's end) instead of
// registering them with t.Cleanup.
type collectingTB struct {
	TB
	mu       sync.Mutex
	cleanups []func()
}

func (c *collectingTB) Cleanup(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanups = append(c.cleanups, f)
}

func (c *collectingTB) Deadline() (time.Time, bool) { return deadline(c.TB) }

func (c *collectingTB) take() []func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.cleanups
	c.cleanups = nil
	return out
}

// NewDetached provisions a sandbox like New, except that its lifetime is
// not t's: it survives t until Delete. Like every claim of the process, its
// lease is renewed while the process lives (see WithTTL), so the
// controller deletes it soon after the process dies if the process never
// does. Until Attach binds it to another test, it reports to t. Delete ends it.
func NewDetached(t TB, template string, opts ...Option) *Sandbox {
	t.Helper()
	sb, err := NewDetachedE(context.Background(), t, template, opts...)
	if err != nil {
		SkipOrFail(t, err)
	}
	return sb
}

// NewDetachedE is NewDetached returning an error; on error, whatever was
// created is deleted when t ends, as with NewE.
func NewDetachedE(ctx context.Context, t TB, template string, opts ...Option) (*Sandbox, error) {
	t.Helper()
	col := &collectingTB{TB: t}
	sb, err := NewE(ctx, col, template, opts...)
	if err != nil {
		for _, f := range col.take() { // as NewE's: t's end deletes what was created
			t.Cleanup(f)
		}
		return nil, err
	}
	sb.t = t
	col.take() // the sandbox's end, which Delete runs
	sb.c.setDetached(sb, true)
	return sb, nil
}

// deleteDetached deletes every detached sandbox not deleted yet. Once the
// tests are over those are the idle ones (fixtures.Shared's pools), which
// nothing else deletes before their claims' shutdownTime.
func deleteDetached() {
	var wg sync.WaitGroup
	for _, sb := range detachedSandboxes() {
		wg.Go(func() {
			if err := sb.DeleteE(context.Background()); err != nil {
				fmt.Fprintf(os.Stderr, "sandboxtest: deleting detached sandbox %s: %v\n", sb, err)
			}
		})
	}
	wg.Wait()
}

// Detached reports whether sb came from NewDetached and is not deleted yet.
func (sb *Sandbox) Detached() bool { return sb.c.isDetached(sb) }

// Attach binds a detached sandbox to t: from now on its logs and failures
// are t's, and Delete applies t's keep policy. Its claim needs no new
// lifetime: the process renews its lease. On a sandbox from New it only
// rebinds.
func (sb *Sandbox) Attach(t TB) {
	t.Helper()
	sb.t = t
}

// Detach binds a detached sandbox to no test while it waits for the next:
// its logs are dropped and its errors go to stderr. Deleting it then
// (DeleteE) applies no keep policy of a failed test.
func (sb *Sandbox) Detach() { sb.t = noTest{name: "detached " + sb.claim} }

// Connection says how this process reaches the router, and why that way.
func (sb *Sandbox) Connection() string {
	return fmt.Sprintf("%s (%s): %s", sb.c.choice.Mode, sb.c.choice.Reason, sb.c.conn.Describe())
}

// noTest is the TB of a sandbox between tests.
type noTest struct{ name string }

func (noTest) Helper()                     {}
func (n noTest) Name() string              { return n.name }
func (noTest) Logf(string, ...any)         {}
func (noTest) Skipf(string, ...any)        {}
func (noTest) FailNow()                    {}
func (noTest) Failed() bool                { return false }
func (noTest) Cleanup(func())              {}
func (n noTest) Fatalf(f string, a ...any) { n.Errorf(f, a...) }
func (n noTest) Errorf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "sandboxtest: %s: %s\n", n.name, fmt.Sprintf(f, a...))
}
