package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentsandbox/sandboxtest/internal/kube"
	"github.com/agentsandbox/sandboxtest/internal/runtime"
)

// TB is the part of testing.TB that sandboxtest uses.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	FailNow()
	Failed() bool
	Cleanup(func())
}

// Sandbox is a provisioned sandbox: a SandboxClaim, its Sandbox and pod,
// and the router connection that reaches it. It is deleted when its test ends.
type Sandbox struct {
	t        TB
	s        *settings
	c        *cluster
	template string
	pool     kube.Pool
	claim    string
	ready    kube.ReadySandbox

	mu      sync.Mutex
	history []Result // recent commands, newest last
}

// New provisions a sandbox from template for the test and registers its
// teardown with t.Cleanup. It fails the test on error, and skips it when no
// cluster is reachable unless CI or SANDBOXTEST_REQUIRE=1 is set.
func New(t TB, template string, opts ...Option) *Sandbox {
	t.Helper()
	sb, err := NewE(context.Background(), t, template, opts...)
	if err != nil {
		var u *UnavailableError
		if errors.As(err, &u) && !requireCluster() {
			t.Skipf("%v (set SANDBOXTEST_REQUIRE=1 to fail instead of skipping)", err)
		}
		t.Fatalf("%v", err)
	}
	return sb
}

// requireCluster says whether an unreachable cluster fails tests instead of skipping them.
func requireCluster() bool {
	return os.Getenv("CI") != "" || os.Getenv("SANDBOXTEST_REQUIRE") == "1"
}

// NewE is New returning an error instead of failing t. t is still used for
// logging and cleanup: the claim is deleted when the test ends.
func NewE(ctx context.Context, t TB, template string, opts ...Option) (*Sandbox, error) {
	t.Helper()
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	c, err := getCluster(ctx, s, t.Logf)
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{t: t, s: s, c: c, template: template}

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	sb.pool, err = c.clients.ResolvePool(rctx, s.namespace, template)
	cancel()
	if err != nil {
		return nil, errorf("%w", err)
	}
	labels := map[string]string{
		kube.LabelCreatedBy: kube.CreatedByValue,
		kube.LabelRunID:     RunID(),
		kube.LabelTest:      labelValue(t.Name()),
	}
	for k, v := range s.labels {
		labels[k] = v
	}
	claim, err := c.clients.CreateClaim(ctx, kube.ClaimSpec{
		Namespace: s.namespace, Pool: sb.pool.Name, Labels: labels,
		Annotations:  map[string]string{kube.AnnotationCreatedAt: time.Now().UTC().Format(time.RFC3339)},
		ShutdownTime: shutdownTime(t, s.ttl),
	})
	if err != nil {
		return nil, errorf("%w", err)
	}
	sb.claim = claim.Name
	t.Cleanup(sb.cleanup) // before waiting: a failed wait still deletes the claim

	ready, err := sb.waitReady(ctx)
	if err != nil {
		return nil, err
	}
	sb.ready = ready
	start2 := "cold"
	if ready.Warm {
		start2 = "warm"
	}
	t.Logf("sandboxtest: claim %s/%s ready in %s (%s, pool %s, pod %s %s)",
		s.namespace, sb.claim, time.Since(start).Round(100*time.Millisecond), start2, sb.pool.Name, ready.PodName, ready.PodIP)
	return sb, nil
}

// waitReady waits for the claim's sandbox within the ready timeout and the
// test's deadline, logging each state change and a line every 10 s.
func (sb *Sandbox) waitReady(ctx context.Context) (kube.ReadySandbox, error) {
	timeout := sb.s.readyTimeout
	if d, ok := deadline(sb.t); ok {
		if left := time.Until(d) - 5*time.Second; left < timeout {
			timeout = max(left, time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	last := "claim created"
	done := make(chan struct{})
	defer close(done)
	start := time.Now()
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				mu.Lock()
				sb.t.Logf("sandboxtest: still waiting for claim %s/%s after %s (last state: %s)", sb.s.namespace, sb.claim, time.Since(start).Round(time.Second), last)
				mu.Unlock()
			}
		}
	}()
	ready, err := sb.c.clients.WaitReady(ctx, sb.s.namespace, sb.claim, func(state string) {
		mu.Lock()
		last = state
		mu.Unlock()
	})
	if err == nil {
		return ready, nil
	}
	var term *kube.TerminalError
	if errors.As(err, &term) {
		return ready, errorf("sandbox for template %q (claim %s/%s) cannot become Ready: %w", sb.template, sb.s.namespace, sb.claim, err)
	}
	var we *kube.WaitError
	if errors.As(err, &we) && errors.Is(err, context.DeadlineExceeded) {
		return ready, errorf("sandbox for template %q (claim %s/%s) not Ready after %s: %s", sb.template, sb.s.namespace, sb.claim, timeout.Round(time.Second), we.State)
	}
	return ready, errorf("waiting for claim %s/%s: %w", sb.s.namespace, sb.claim, err)
}

// cleanup deletes the claim, or keeps it when asked to.
func (sb *Sandbox) cleanup() {
	ns, claim := sb.s.namespace, sb.claim
	keep := sb.s.keep == KeepAlways || (sb.s.keep == KeepOnFailure && sb.t.Failed())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if keep {
		until := time.Now().Add(30 * time.Minute)
		if err := sb.c.clients.ExtendShutdown(ctx, ns, claim, until); err != nil {
			sb.t.Logf("sandboxtest: keeping claim %s/%s, but could not extend its shutdownTime: %v", ns, claim, err)
		}
		pod := sb.ready.PodName
		if pod == "" {
			pod = "<pod>"
		}
		sb.t.Logf("sandboxtest: kept sandbox %s/%s until %s; to look at it:\n"+
			"  kubectl -n %s exec -it %s -- sh\n  kubectl -n %s logs %s\n  kubectl -n %s delete sandboxclaim %s",
			ns, claim, until.Format(time.TimeOnly), ns, pod, ns, pod, ns, claim)
		return
	}
	start := time.Now()
	if err := sb.c.clients.DeleteClaim(ctx, ns, claim, sb.ready.SandboxName); err != nil {
		sb.t.Errorf("sandboxtest: cleanup of claim %s/%s: %v (the controller deletes it at its shutdownTime; or: sandboxtest-setup gc --run-id %s)", ns, claim, err, RunID())
		return
	}
	sb.t.Logf("sandboxtest: deleted claim %s/%s in %s", ns, claim, time.Since(start).Round(time.Millisecond))
}

// shutdownTime is the test's deadline plus a grace period, else now + ttl.
func shutdownTime(t TB, ttl time.Duration) time.Time {
	if d, ok := deadline(t); ok {
		return d.Add(shutdownGrace)
	}
	return time.Now().Add(ttl)
}

func deadline(t TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

var invalidLabel = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// labelValue makes a test name a valid label value: TestFoo/bar baz -> TestFoo_bar_baz.
func labelValue(name string) string {
	v := invalidLabel.ReplaceAllString(name, "_")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "_.-")
}

// Accessors.

func (sb *Sandbox) Template() string    { return sb.template }
func (sb *Sandbox) Namespace() string   { return sb.s.namespace }
func (sb *Sandbox) ClaimName() string   { return sb.claim }
func (sb *Sandbox) SandboxName() string { return sb.ready.SandboxName }
func (sb *Sandbox) PodName() string     { return sb.ready.PodName }
func (sb *Sandbox) PodIP() string       { return sb.ready.PodIP }
func (sb *Sandbox) Pool() string        { return sb.pool.Name }

// String names the sandbox in messages.
func (sb *Sandbox) String() string {
	return fmt.Sprintf("sandbox %s/%s (template %s, pod %s)", sb.s.namespace, sb.claim, sb.template, sb.ready.PodName)
}

func (sb *Sandbox) target() runtime.Target {
	return runtime.Target{SandboxID: sb.ready.SandboxName, Namespace: sb.s.namespace, PodIP: sb.ready.PodIP, Port: sb.s.serverPort}
}

var _ TB = (*testing.T)(nil)
