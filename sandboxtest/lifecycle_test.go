package sandboxtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	"gotest.tools/v3/poll"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// testClients talks to the cluster the suite runs against.
func testClients(t *testing.T) *kube.Clients {
	t.Helper()
	cfg, _, err := loadRestConfig()
	assert.NilError(t, err)
	c, err := kube.NewClients(cfg)
	assert.NilError(t, err)
	return c
}

func TestKeepAlwaysKeepsTheClaim(t *testing.T) {
	rec := &recorder{name: t.Name()}
	var sb *Sandbox
	rec.run(func() { sb = New(rec, "python-sandbox-template", WithKeep(KeepAlways)) })
	assert.Assert(t, sb != nil, rec.output())
	for _, f := range rec.cleanups {
		f()
	}
	c := testClients(t)
	ctx := context.Background()
	claim, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(sb.Namespace()).Get(ctx, sb.ClaimName(), metav1.GetOptions{})
	assert.NilError(t, err, "a kept claim must survive its test")
	t.Cleanup(func() { _ = c.DeleteClaim(context.Background(), sb.Namespace(), sb.ClaimName(), sb.SandboxName()) })
	left := time.Until(claim.Spec.Lifecycle.ShutdownTime.Time)
	assert.Check(t, left > 25*time.Minute && left <= 31*time.Minute, "shutdownTime %s from now", left)
	// Kept on purpose: no longer a lease that gc spares or the process renews.
	assert.Check(t, !kube.LeaseFresh(claim, time.Now()), "annotations %v", claim.Annotations)
	assert.Check(t, !sb.c.leases.Held(sb.Namespace(), sb.ClaimName()))
	out := rec.output()
	for _, want := range []string{"kept sandbox", "kubectl -n default exec -it " + sb.PodName(), "kubectl -n default logs " + sb.PodName(), "kubectl -n default delete sandboxclaim " + sb.ClaimName()} {
		assert.Check(t, is.Contains(out, want))
	}
}

func TestKeepOnFailureDeletesAfterSuccess(t *testing.T) {
	rec := &recorder{name: t.Name()}
	var sb *Sandbox
	rec.run(func() { sb = New(rec, "python-sandbox-template", WithKeep(KeepOnFailure)) })
	assert.Assert(t, sb != nil, rec.output())
	for _, f := range rec.cleanups {
		f()
	}
	_, err := testClients(t).Extensions.ExtensionsV1beta1().SandboxClaims(sb.Namespace()).Get(context.Background(), sb.ClaimName(), metav1.GetOptions{})
	assert.Check(t, apierrors.IsNotFound(err), "claim of a passing test not deleted: %v", err)
	assert.Check(t, is.Contains(rec.output(), "deleted claim"))
}

func TestRouterMissing(t *testing.T) {
	c := testClients(t)
	ctx := context.Background()
	ns := fmt.Sprintf("no-router-%d", time.Now().UnixNano()%100000)
	_, err := c.Core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() { _ = c.Core.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	start := time.Now()
	_, err = NewE(ctx, t, "python-sandbox-template", WithNamespace(ns))
	assert.Check(t, is.ErrorContains(err, "sandbox-router-svc"))
	assert.Check(t, is.ErrorContains(err, "sandboxtest-setup deploy --namespace "+ns))
	assert.Check(t, errors.Is(err, ErrRouterNotFound), "%v", err)
	t.Logf("router-missing error after %s: %v", time.Since(start).Round(time.Millisecond), err)
	claims, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(ns).List(ctx, metav1.ListOptions{})
	assert.NilError(t, err)
	assert.Check(t, is.Len(claims.Items, 0), "nothing is claimed when the router is missing")
}

// childEnv makes the test binary act as a test that is killed mid-test.
const childEnv = "SANDBOXTEST_TEST_KILLED_CHILD"

// TestKilledChild is the child: it provisions a sandbox and waits to be killed.
func TestKilledChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper of TestKilledBinaryLeavesNothingForLong")
	}
	sb := New(t, "python-sandbox-template")
	fmt.Printf("CLAIM %s\n", sb.ClaimName())
	time.Sleep(time.Hour)
}

// TestKilledBinaryLeavesNothingForLong kills a test binary mid-test (with no
// -timeout: nothing but the lease bounds its claim): its cleanup never
// runs, nothing renews the claim's lease (SANDBOXTEST_TTL=3s) any more, and
// the controller deletes the claim at its shutdownTime.
func TestKilledBinaryLeavesNothingForLong(t *testing.T) {
	exe, err := os.Executable()
	assert.NilError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestKilledChild$", "-test.v", "-test.timeout=0")
	cmd.Env = append(os.Environ(), childEnv+"=1", "SANDBOXTEST_LOCAL=0", "SANDBOXTEST_TTL=3s")
	stdout, err := cmd.StdoutPipe()
	assert.NilError(t, err)
	cmd.Stderr = os.Stderr
	assert.NilError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var claim string
	buf := make([]byte, 4096)
	var seen strings.Builder
	for claim == "" {
		n, err := stdout.Read(buf)
		assert.NilError(t, err, "child ended before provisioning: %s", seen.String())
		seen.Write(buf[:n])
		for _, line := range strings.Split(seen.String(), "\n") {
			if name, ok := strings.CutPrefix(line, "CLAIM "); ok {
				claim = strings.TrimSpace(name)
			}
		}
	}
	assert.NilError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	c := testClients(t)
	killed := time.Now()
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		_, err := c.Extensions.ExtensionsV1beta1().SandboxClaims("default").Get(context.Background(), claim, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return poll.Success()
		}
		return poll.Continue("claim %s still exists (%v)", claim, err)
	}, poll.WithTimeout(90*time.Second), poll.WithDelay(200*time.Millisecond))
	t.Logf("claim %s of the killed binary deleted by the controller %s after the kill", claim, time.Since(killed).Round(100*time.Millisecond))
}

func TestUnschedulableFailsWithTheReason(t *testing.T) {
	c := testClients(t)
	ctx := context.Background()
	name := fmt.Sprintf("unschedulable-%d", time.Now().UnixNano()%100000)
	api := c.Extensions.ExtensionsV1beta1()
	tmpl := &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: extv1beta1.SandboxTemplateSpec{SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{
			PodTemplate: sandboxv1beta1.PodTemplate{Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"sandboxtest.io/no-such-node": "true"},
				Containers:   []corev1.Container{{Name: "runtime", Image: "python-runtime-sandbox:test"}},
			}},
		}},
	}
	_, err := api.SandboxTemplates("default").Create(ctx, tmpl, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = api.SandboxWarmPools("default").Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = api.SandboxTemplates("default").Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	start := time.Now()
	_, err = NewE(ctx, t, name)
	took := time.Since(start)
	assert.Check(t, is.ErrorContains(err, "Unschedulable"))
	assert.Check(t, is.ErrorContains(err, "node(s) didn't match"))
	assert.Check(t, took >= kube.UnschedulableGrace, "gave up after %s, before the grace period", took)
	t.Logf("unschedulable sandbox failed after %s: %v", took.Round(100*time.Millisecond), err)
}

// ctxRecorder is a test whose context (t.Context in Go 1.24+) the test cancels.
type ctxRecorder struct {
	*recorder
	ctx context.Context
}

func (r ctxRecorder) Context() context.Context { return r.ctx }

func TestTestContextStopsCalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rec := ctxRecorder{recorder: &recorder{name: t.Name()}, ctx: ctx}
	var sb *Sandbox
	rec.run(func() { sb = New(rec, "python-sandbox-template") })
	assert.Assert(t, sb != nil, rec.output())
	t.Cleanup(func() {
		for _, f := range rec.cleanups {
			f()
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec.run(func() { sb.Run("sleep 60") })
	}()
	time.Sleep(time.Second) // the command is running
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run went on after the test's context was cancelled")
	}
	assert.Check(t, rec.failed)
	assert.Check(t, is.Contains(rec.output(), `running "sleep 60"`))
	assert.Check(t, is.Contains(rec.output(), "context canceled"))

	// A call made once the context is done (from a t.Cleanup function, after
	// the test) runs under a context of its own.
	rec.failed, rec.errors = false, nil
	rec.run(func() { sb.RunOK("true") })
	assert.Check(t, !rec.failed, rec.output())
}

func TestRunFailsWithTheCallTimeout(t *testing.T) {
	t.Setenv("SANDBOXTEST_CALL_TIMEOUT", "1s")
	rec := &recorder{name: t.Name()}
	var sb *Sandbox
	rec.run(func() { sb = New(rec, "python-sandbox-template") })
	assert.Assert(t, sb != nil, rec.output())
	t.Cleanup(func() {
		for _, f := range rec.cleanups {
			f()
		}
	})
	rec.run(func() { sb.Run("sleep 20") })
	assert.Check(t, rec.failed)
	out := rec.output()
	assert.Check(t, is.Contains(out, `running "sleep 20" in sandbox`))
	assert.Check(t, is.Contains(out, "the call timeout of 1s ran out (SANDBOXTEST_CALL_TIMEOUT"))
}

func TestExpiredClaimFailsNewAtOnce(t *testing.T) {
	c := testClients(t)
	ctx := context.Background()
	api := c.Extensions.ExtensionsV1beta1()
	base, err := api.SandboxTemplates("default").Get(ctx, "python-sandbox-template", metav1.GetOptions{})
	assert.NilError(t, err)
	// A sandbox that never becomes Ready: its readiness probe asks a port nothing listens on.
	name := fmt.Sprintf("never-ready-%d", time.Now().UnixNano()%100000)
	tmpl := &extv1beta1.SandboxTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: *base.Spec.DeepCopy()}
	probe := tmpl.Spec.PodTemplate.Spec.Containers[0].ReadinessProbe
	assert.Assert(t, probe != nil && probe.HTTPGet != nil)
	probe.HTTPGet.Port = intstr.FromInt32(9)
	_, err = api.SandboxTemplates("default").Create(ctx, tmpl, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = api.SandboxWarmPools("default").Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = api.SandboxTemplates("default").Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	// The claim expires while New waits, as when the process was stopped
	// (a laptop asleep) past its lease: the shutdownTime is moved into the
	// past between two renewals.
	rec := &recorder{name: t.Name()}
	go func() {
		sel := kube.LabelTest + "=" + labelValue(rec.Name())
		for ctx.Err() == nil {
			list, err := api.SandboxClaims("default").List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err == nil && len(list.Items) > 0 {
				_ = c.ExtendShutdown(ctx, "default", list.Items[0].Name, time.Now().Add(-time.Second))
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	_, err = NewE(ctx, rec, name, WithReadyTimeout(2*time.Minute))
	for _, f := range rec.cleanups {
		f()
	}
	var term *TerminalError
	assert.Assert(t, errors.As(err, &term), "%v", err)
	expired := map[string]bool{"ClaimExpired": true, "SandboxExpired": true, "ClaimDeleted": true}
	assert.Check(t, expired[term.Reason], "reason %s: %v", term.Reason, err)
	t.Logf("%v", err)
}

// TestLongTestKeepsItsSandbox: a test that runs for several times its
// claim's lease still has its sandbox; the process renewed it.
func TestLongTestKeepsItsSandbox(t *testing.T) {
	const lease = 3 * time.Second
	sb := New(t, "python-sandbox-template", WithTTL(lease))
	c := testClients(t)
	get := func() *extv1beta1.SandboxClaim {
		cl, err := c.Extensions.ExtensionsV1beta1().SandboxClaims(sb.Namespace()).Get(context.Background(), sb.ClaimName(), metav1.GetOptions{})
		assert.NilError(t, err)
		return cl
	}
	first := get().Spec.Lifecycle.ShutdownTime.Time
	time.Sleep(4 * lease)
	sb.RunOK("true")
	st := sb.Status()
	assert.Check(t, st.Ready && st.SandboxFound, "%+v", st)
	cl := get()
	assert.Check(t, cl.Spec.Lifecycle.ShutdownTime.After(first.Add(2*lease)), "shutdownTime %s, at creation %s", cl.Spec.Lifecycle.ShutdownTime, first)
	assert.Check(t, kube.LeaseFresh(cl, time.Now()), "annotations %v", cl.Annotations)
}

// Main deletes what fixtures.Shared leaves idle: every detached sandbox not
// deleted by the time the tests are over.
func TestMainDeletesDetachedSandboxes(t *testing.T) {
	sb := NewDetached(t, "python-sandbox-template")
	sb.Detach() // idle, as a shared sandbox between tests
	deleteDetached()
	assert.Check(t, !sb.Detached(), "still detached after deleteDetached")
	poll.WaitOn(t, func(poll.LogT) poll.Result {
		if st := sb.Status(); st.ClaimFound {
			return poll.Continue("claim %s still exists", sb.claim)
		}
		return poll.Success()
	}, poll.WithTimeout(60*time.Second), poll.WithDelay(200*time.Millisecond))
}
