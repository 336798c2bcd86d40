package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentsandbox/go-sandboxtest/connect"
	"github.com/agentsandbox/go-sandboxtest/internal/kube"
	"github.com/agentsandbox/go-sandboxtest/internal/report"
	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
	"github.com/agentsandbox/go-sandboxtest/internal/summary"
	"github.com/agentsandbox/go-sandboxtest/tracing"
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

	rec     *testRecord    // the test it reports to in traces and the summary
	span    trace.Span     // sandbox-client.lifecycle, ended after the claim's deletion
	sum     *summary.Entry // its line in the run summary
	created time.Time      // when New was called

	deleted atomic.Bool // Delete (or the test's end) has begun: calls fail with ErrDeleted
	endOnce sync.Once   // the end runs once, from Delete or the test's cleanup
	endErr  error

	mu      sync.Mutex
	history []Result     // recent commands, newest last
	trail   report.Trail // recent calls of any kind and states seen while waiting, for the failure report
}

// New provisions a sandbox from template for the test and registers its
// teardown with t.Cleanup. It fails the test on error, and skips it when no
// cluster is reachable unless CI or SANDBOXTEST_REQUIRE=1 is set.
func New(t TB, template string, opts ...Option) *Sandbox {
	t.Helper()
	sb, err := NewE(testContext(t), t, template, opts...)
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
	return connect.InCI() || envSwitch("SANDBOXTEST_REQUIRE", false)
}

// NewE is New returning an error instead of failing t. t is still used for
// logging and cleanup: the claim is deleted when the test ends.
func NewE(ctx context.Context, t TB, template string, opts ...Option) (_ *Sandbox, err error) {
	t.Helper()
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	sb := &Sandbox{t: t, s: s, template: template, created: start, rec: testFor(t)}
	// From here on, every error is filed in the summary and the lifecycle span.
	sb.startLifecycle()
	sb.sum = sb.rec.addSandbox(template, s.namespace)
	defer func() {
		if err != nil {
			sb.sum.Update(func(x *summary.Sandbox) { x.Error = err.Error() })
			if sb.claim == "" { // no cleanup registered: the lifecycle ends here
				endSpan(sb.span, err)
			} else {
				sb.span.RecordError(err)
			}
		}
	}()
	c, err := sb.connect(ctx)
	if err != nil {
		return nil, err
	}
	sb.c = c

	cctx, cspan := sb.startOp(ctx, tracing.SpanCreateClaim, tracing.AttrTemplate.String(template))
	rctx, cancel := context.WithTimeout(cctx, 10*time.Second)
	sb.pool, err = c.clients.ResolvePool(rctx, s.namespace, template)
	timedOut := rctx.Err() != nil // read before cancel, which sets it
	cancel()
	if err != nil {
		if timedOut && ctx.Err() == nil {
			err = &deadlineError{fmt.Sprintf("sandboxtest: finding the warm pool for template %q in namespace %s: the API server at %s did not answer within 10s: %v", template, s.namespace, c.cfg.Host, err)}
		} else {
			err = errorf("%w", err)
		}
		endSpan(cspan, err)
		return nil, err
	}
	if s.serverPort == 0 { // not given: where the template says its server listens
		s.serverPort = int(sb.pool.Port)
		if s.serverPort == 0 {
			s.serverPort = DefaultServerPort
		}
	}
	cspan.SetAttributes(tracing.AttrPool.String(sb.pool.Name))
	sb.span.SetAttributes(tracing.AttrPool.String(sb.pool.Name))
	sb.sum.Update(func(x *summary.Sandbox) { x.Pool = sb.pool.Name })
	lease := kube.Lease{Duration: s.ttl} // renewed from creation until the sandbox's end
	shutdown, annotations := c.leases.LeaseSpec(lease, time.Now())
	// As upstream's clients: when the client first asked, for the controller's startup-latency metric.
	annotations[kube.AnnotationClientFirstRequestedAt] = start.UTC().Format(time.RFC3339Nano)
	if tc := tracing.TraceContextJSON(cctx); tc != "" {
		annotations[tracing.TraceContextAnnotation] = tc // the controller's spans join this trace
	}
	labels := map[string]string{
		kube.LabelCreatedBy: kube.CreatedByValue,
		kube.LabelRunID:     RunID(),
		kube.LabelTest:      labelValue(t.Name()),
	}
	for k, v := range s.labels {
		labels[k] = v
	}
	claim, err := c.clients.CreateClaim(cctx, kube.ClaimSpec{
		Namespace: s.namespace, Pool: sb.pool.Name, Labels: labels,
		Annotations:  annotations,
		ShutdownTime: shutdown,
		PodLabels:    s.podLabels, PodAnnotations: s.podAnnotations,
		VolumeClaimTemplates: s.volumeClaimTemplates,
	})
	if err != nil {
		if ctx.Err() != nil {
			err = errorf("creating a SandboxClaim for pool %s in namespace %s: the caller's context ended (%w)", sb.pool.Name, s.namespace, err)
		} else {
			err = errorf("%w", err)
		}
		endSpan(cspan, err)
		return nil, err
	}
	sb.claim = claim.Name
	c.leases.Add(s.namespace, claim.Name, lease) // until the sandbox's end
	cspan.SetAttributes(tracing.AttrClaimName.String(claim.Name))
	cspan.End()
	sb.span.SetAttributes(tracing.AttrClaimName.String(claim.Name))
	sb.sum.Update(func(x *summary.Sandbox) { x.Claim = claim.Name })
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
	took := time.Since(start)
	sb.span.SetAttributes(tracing.AttrSandbox.String(ready.SandboxName), tracing.AttrPodName.String(ready.PodName),
		tracing.AttrPodIP.String(ready.PodIP), tracing.AttrNodeName.String(ready.NodeName), tracing.AttrStart.String(start2))
	sb.sum.Update(func(x *summary.Sandbox) {
		x.Start, x.Warm, x.TimeToReadyMS = start2, ready.Warm, ms(took)
	})
	progressf(t, "sandboxtest: claim %s/%s ready in %s (%s, pool %s, pod %s %s, node %s)",
		s.namespace, sb.claim, took.Round(100*time.Millisecond), start2, sb.pool.Name, ready.PodName, ready.PodIP, ready.NodeName)
	return sb, nil
}

// connect gets the process's connection to the cluster and the router, in a connect span.
func (sb *Sandbox) connect(ctx context.Context) (*cluster, error) {
	ctx, span := sb.startOp(ctx, tracing.SpanConnect)
	c, err := getCluster(ctx, sb.s, func(format string, args ...any) {
		sb.t.Helper()
		progressf(sb.t, format, args...)
	})
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	mode := tracing.AttrMode.String(string(c.choice.Mode))
	span.SetAttributes(mode, tracing.AttrRoute.String(c.conn.Describe()))
	span.End()
	sb.span.SetAttributes(mode)
	sb.sum.Update(func(x *summary.Sandbox) { x.Mode = string(c.choice.Mode) })
	return c, nil
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
	ctx, span := sb.startOp(ctx, tracing.SpanWaitReady, tracing.AttrClaimName.String(sb.claim))
	ready, err := sb.waitReadyWithin(ctx, timeout)
	if err == nil {
		span.SetAttributes(tracing.AttrSandbox.String(ready.SandboxName), tracing.AttrPodName.String(ready.PodName))
	}
	endSpan(span, err)
	return ready, err
}

func (sb *Sandbox) waitReadyWithin(ctx context.Context, timeout time.Duration) (kube.ReadySandbox, error) {
	limit := fmt.Sprintf("its ready timeout ran out (%s; set by WithReadyTimeout or SANDBOXTEST_READY_TIMEOUT)", timeout.Round(100*time.Millisecond))
	if timeout < sb.s.readyTimeout {
		limit = fmt.Sprintf("the test's deadline was near (it left %s; go test -timeout sets it)", timeout.Round(100*time.Millisecond))
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		limit = "the caller's context ended"
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
		sb.trail.Observe(state)
	})
	if err == nil {
		return ready, nil
	}
	waited := time.Since(start).Round(100 * time.Millisecond)
	hint := fmt.Sprintf("look: kubectl -n %s describe sandboxclaim %s", sb.s.namespace, sb.claim)
	var term *kube.TerminalError
	if errors.As(err, &term) {
		return ready, &TerminalError{Reason: term.Reason, Message: term.Message, Namespace: sb.s.namespace, Claim: sb.claim, Template: sb.template,
			msg: fmt.Sprintf("sandboxtest: sandbox for template %q (claim %s/%s) cannot become Ready (after %s): %v; %s", sb.template, sb.s.namespace, sb.claim, waited, err, hint)}
	}
	var we *kube.WaitError
	if errors.As(err, &we) && errors.Is(err, context.DeadlineExceeded) {
		return ready, &deadlineError{fmt.Sprintf("sandboxtest: sandbox for template %q (claim %s/%s) not Ready after %s: %s; last state: %s; %s", sb.template, sb.s.namespace, sb.claim, waited, limit, we.State, hint)}
	}
	return ready, errorf("waiting for claim %s/%s after %s: %w", sb.s.namespace, sb.claim, waited, err)
}

// cleanup is the end of the sandbox registered with t.Cleanup; after
// Delete it does nothing.
func (sb *Sandbox) cleanup() {
	if err, first := sb.finish(); first && err != nil {
		sb.t.Errorf("%v", err)
	}
}

// finish ends the sandbox once; first says whether this call did it.
func (sb *Sandbox) finish() (err error, first bool) {
	sb.endOnce.Do(func() {
		first = true
		sb.deleted.Store(true)
		sb.endErr = sb.end()
	})
	return sb.endErr, first
}

// end writes the failure report when the test failed, then deletes the
// claim, or keeps it when asked to, and ends the lifecycle span.
func (sb *Sandbox) end() (err error) {
	ns, claim := sb.s.namespace, sb.claim
	sb.c.leases.Release(ns, claim) // kept: its own shutdownTime; else deleted, or expiring within the lease
	failed := sb.t.Failed()
	if failed {
		sb.failureReport() // before the deletion takes the objects away
	}
	keep := sb.s.keep == KeepAlways || (sb.s.keep == KeepOnFailure && failed)
	defer func() {
		sb.span.SetAttributes(tracing.AttrKept.Bool(keep))
		spanErr := err
		if spanErr == nil && failed {
			spanErr = errors.New("the test failed")
		}
		endSpan(sb.span, spanErr)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if keep {
		until := time.Now().Add(keptFor)
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
		return nil
	}
	start := time.Now()
	dctx, span := sb.startOp(ctx, tracing.SpanDeleteClaim, tracing.AttrClaimName.String(claim))
	err = sb.c.clients.DeleteClaim(dctx, ns, claim, sb.ready.SandboxName)
	endSpan(span, err)
	if err != nil {
		what := err.Error()
		if ctx.Err() != nil {
			lctx, lcancel := context.WithTimeout(context.Background(), 2*kube.DefaultCallTimeout)
			left := sb.c.clients.DescribeLeftovers(lctx, ns, sb.ready.SandboxName, sb.ready.PodName, kube.DefaultCallTimeout)
			lcancel()
			what = fmt.Sprintf("its Sandbox %s was not gone %s after the claim's deletion (%s)", sb.ready.SandboxName, cleanupTimeout, left)
			err = &deadlineError{what}
		}
		return errorf("deleting claim %s/%s: %s (no longer renewed, the controller deletes it within %s; or: sandboxtest-setup gc --run-id %s): %w", ns, claim, what, sb.s.ttl, RunID(), err)
	}
	progressf(sb.t, "sandboxtest: deleted claim %s/%s in %s", ns, claim, time.Since(start).Round(time.Millisecond))
	return nil
}

// Delete ends the sandbox now, as the end of its test would: the failure
// report if the test has failed, then the claim's deletion, waiting (up to
// 30s) until its Sandbox is gone; the keep policy (WithKeep) applies.
// Later calls to the sandbox fail with ErrDeleted; a second Delete, and
// the test's cleanup, do nothing. It fails the test if the deletion fails.
// On a sandbox from NewDetached it also ends the detachment.
func (sb *Sandbox) Delete() {
	sb.t.Helper()
	if err := sb.DeleteE(sb.testContext()); err != nil {
		sb.t.Fatalf("%v", err)
	}
}

// DeleteE is Delete returning the deletion's error (the same on every
// call). A ctx already done deletes nothing and returns its error; once
// begun, the deletion is bounded by its own 30s, not by ctx, so that
// nothing is left half deleted.
func (sb *Sandbox) DeleteE(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return errorf("deleting %s: %w (nothing deleted)", sb, err)
	}
	sb.c.setDetached(sb, false)
	err, _ := sb.finish()
	return err
}

// Status is what the cluster says of a sandbox, read by Sandbox.Status.
type Status struct {
	// Ready, Reason and Message are the Sandbox's Ready condition (what
	// New waits for; the claim copies it a moment later), or the claim's
	// when there is no Sandbox: e.g. Ready with DependenciesReady; not Ready
	// with SandboxExpired, ClaimExpired, DependenciesNotReady.
	Ready           bool
	Reason, Message string
	// ClaimFound and SandboxFound are false once the claim, or its Sandbox,
	// is gone (after Delete, or the controller's deletion at shutdownTime).
	ClaimFound, SandboxFound bool
	// Claim and Sandbox are their status conditions.
	Claim, Sandbox []Condition
}

// Condition is one status condition of the claim or the Sandbox.
type Condition struct {
	Type, Status, Reason, Message string
	LastTransitionTime            time.Time
}

// Status reads the state of the sandbox's claim and Sandbox from the
// cluster, failing the test if it cannot.
func (sb *Sandbox) Status() Status {
	sb.t.Helper()
	st, err := sb.StatusE(sb.testContext())
	if err != nil {
		sb.t.Fatalf("%v", err)
	}
	return st
}

// StatusE is Status returning an error; a deleted sandbox is not an
// error (ClaimFound is false).
func (sb *Sandbox) StatusE(ctx context.Context) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*kube.DefaultCallTimeout)
	defer cancel()
	ks, err := sb.c.clients.ReadClaimStatus(ctx, sb.s.namespace, sb.claim, sb.ready.SandboxName)
	if err != nil {
		return Status{}, errorf("status of %s: %w", sb, err)
	}
	st := Status{ClaimFound: ks.ClaimFound, SandboxFound: ks.SandboxFound, Claim: conditions(ks.Claim), Sandbox: conditions(ks.Sandbox)}
	from := st.Claim
	if st.SandboxFound {
		from = st.Sandbox
	}
	for _, c := range from {
		if c.Type == "Ready" {
			st.Ready, st.Reason, st.Message = c.Status == "True", c.Reason, c.Message
		}
	}
	return st, nil
}

func conditions(cs []metav1.Condition) []Condition {
	if len(cs) == 0 {
		return nil
	}
	out := make([]Condition, len(cs))
	for i, c := range cs {
		out[i] = Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime.Time}
	}
	return out
}

// testContext is t's context (t.Context, Go 1.24+) while the test runs,
// else a context of its own (see Sandbox.testContext).
func testContext(t TB) context.Context {
	if c, ok := t.(interface{ Context() context.Context }); ok {
		if ctx := c.Context(); ctx != nil && ctx.Err() == nil {
			return ctx
		}
	}
	return context.Background()
}

// cleanupTimeout bounds a sandbox's deletion in its test's cleanup.
const cleanupTimeout = 30 * time.Second

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
