package sandboxtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sandboxv1beta1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1beta1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/agentsandbox/go-sandboxtest/internal/report"
)

// finish runs a recorder's cleanups as the testing package would: last
// registered first.
func finish(r *recorder) {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.run(r.cleanups[i])
	}
	r.cleanups = nil
}

// reportOf returns the failure report among a recorder's log lines.
func reportOf(r *recorder) string {
	for _, l := range r.logs {
		if strings.HasPrefix(l, report.HeaderPrefix) {
			return l
		}
	}
	return ""
}

func testCluster(t *testing.T) *cluster {
	t.Helper()
	s, err := newSettings(nil)
	assert.NilError(t, err)
	c, err := getCluster(context.Background(), s, t.Logf)
	assert.NilError(t, err)
	return c
}

// TestFailureReport fails a test on purpose (through a recording TB) and
// checks that its report has every section, filled from the real cluster.
func TestFailureReport(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(report.ArtifactsEnv, dir)
	rec := &recorder{name: "TestDeliberateFailure/sub case"}
	var sb *Sandbox
	rec.run(func() {
		sb = New(rec, "python-sandbox-template")
		sb.RunOK("echo hello")
		sb.Run("sh -c 'echo oops >&2; exit 3'")
		sb.WriteFile("notes/a.txt", []byte("abc"))
		assert.Check(t, !sb.Exists("notes/missing"))
		rec.Errorf("deliberate failure")
	})
	assert.Assert(t, sb != nil && rec.failed, rec.output())
	claim, pod := sb.ClaimName(), sb.PodName()
	finish(rec)

	text := reportOf(rec)
	assert.Assert(t, text != "", "no failure report in:\n%s", rec.output())
	t.Logf("the report:\n%s", text)
	lines := strings.Split(text, "\n")
	assert.Check(t, len(lines) <= report.MaxLines, "%d lines", len(lines))
	for _, want := range []string{
		// identity
		"sandboxtest: failure report for default/" + claim + " (test TestDeliberateFailure/sub case failed",
		"== identity", "  template:  python-sandbox-template", "  pool:      python-sandbox-template (",
		"  claim:     default/" + claim, "  sandbox:   " + sb.SandboxName(), "  pod:       " + pod + "  ip " + sb.PodIP(),
		"  node:      sandboxtest-local", "  mode:      tunnel: tunnel to default/sandbox-router", "  run id:    " + RunID(),
		// timeline: the objects' conditions, with transition times, and what New saw
		"== timeline", "claim " + claim, "sandbox " + sb.SandboxName(), "pod " + pod, "Ready=True", "created", "seen",
		"container python-runtime running",
		// events of the objects: the scheduler's, at least
		"== events", "pod/" + pod, "Scheduled: Successfully assigned default/" + pod + " to sandboxtest-local",
		// the runtime's access log and the router's log
		"== sandbox pod log", "pod " + pod + " container python-runtime", `"POST /execute HTTP/1.1" 200`,
		"== router log", "pod sandbox-router-",
		// the calls
		"== last 10 calls", "run    exit 0", "echo hello", "run    exit 3", "stderr: oops",
		"write  ok", "notes/a.txt (3 bytes)", "exists ok", "notes/missing (absent)",
		"== artifacts: " + filepath.Join(dir, "TestDeliberateFailure", "sub_case", claim),
	} {
		assert.Check(t, is.Contains(text, want))
	}
	assert.Check(t, !strings.Contains(text, "not gathered"), "every section was gathered")
	routerLines := section(text, "== router log")
	assert.Check(t, len(routerLines) >= 2, "router log lines: %q", routerLines)

	art := filepath.Join(dir, "TestDeliberateFailure", "sub_case", claim)
	for file, want := range map[string]string{
		"claim.yaml":   "kind: SandboxClaim",
		"sandbox.yaml": "kind: Sandbox",
		"pod.yaml":     "kind: Pod",
		"events.txt":   "Scheduled",
		"timeline.txt": "Ready=True",
		"commands.txt": "oops",
		"report.txt":   "== identity",
		"logs/sandbox-" + pod + "-python-runtime.log": "POST /execute",
	} {
		data, err := os.ReadFile(filepath.Join(art, file))
		if assert.Check(t, err) {
			assert.Check(t, is.Contains(string(data), want), file)
		}
	}
	routerLogs, _ := filepath.Glob(filepath.Join(art, "logs", "router-*.log"))
	assert.Check(t, len(routerLogs) > 0, "no router log in the artifacts")

	// The report came first; the claim is still deleted after it.
	c := testCluster(t)
	_, err := c.clients.Extensions.ExtensionsV1beta1().SandboxClaims("default").Get(context.Background(), claim, metav1.GetOptions{})
	assert.Check(t, apierrors.IsNotFound(err), "claim after cleanup: %v", err)
}

// section returns the lines of the report's section that starts with head.
func section(text, head string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, head):
			in = true
		case strings.HasPrefix(l, "== "):
			in = false
		case in:
			out = append(out, l)
		}
	}
	return out
}

// TestNoReportWhenPassing: a passing test logs no report.
func TestNoReportWhenPassing(t *testing.T) {
	t.Setenv(report.ArtifactsEnv, t.TempDir())
	rec := &recorder{name: "TestPasses"}
	rec.run(func() { New(rec, "python-sandbox-template").RunOK("true") })
	finish(rec)
	assert.Check(t, !rec.failed, rec.output())
	assert.Check(t, is.Equal(reportOf(rec), ""))
}

// createTemplate creates a SandboxTemplate with one container, and a cold
// pool for it, deleted when the test ends.
func createTemplate(t *testing.T, c *cluster, name string, container corev1.Container) {
	t.Helper()
	ctx := context.Background()
	x := c.clients.Extensions.ExtensionsV1beta1()
	tmpl := &extv1beta1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: extv1beta1.SandboxTemplateSpec{SandboxBlueprint: sandboxv1beta1.SandboxBlueprint{
			PodTemplate: sandboxv1beta1.PodTemplate{Spec: corev1.PodSpec{Containers: []corev1.Container{container}}},
		}},
	}
	_, err := x.SandboxTemplates("default").Create(ctx, tmpl, metav1.CreateOptions{})
	assert.NilError(t, err)
	pool := &extv1beta1.SandboxWarmPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       extv1beta1.SandboxWarmPoolSpec{Replicas: new(int32), TemplateRef: extv1beta1.SandboxTemplateRef{Name: name}},
	}
	_, err = x.SandboxWarmPools("default").Create(ctx, pool, metav1.CreateOptions{})
	assert.NilError(t, err)
	t.Cleanup(func() {
		_ = x.SandboxWarmPools("default").Delete(ctx, name, metav1.DeleteOptions{})
		_ = x.SandboxTemplates("default").Delete(ctx, name, metav1.DeleteOptions{})
	})
}

// TestImageWithoutRunnerFailsFast: the process node fails a pod whose
// image it cannot run (NoRunner); New says so at once instead of waiting
// out its timeout, and the report shows the pod's event.
func TestImageWithoutRunnerFailsFast(t *testing.T) {
	c := testCluster(t)
	createTemplate(t, c, "no-runner-template", corev1.Container{Name: "main", Image: "example.invalid/no-such-runtime:1"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec := &recorder{name: "TestNoRunner"}
	var err error
	rec.run(func() { _, err = NewE(ctx, rec, "no-runner-template") })
	assert.Assert(t, err != nil)
	assert.Check(t, !errors.Is(err, context.DeadlineExceeded), "it waited for the deadline: %v", err)
	for _, want := range []string{"cannot become Ready", "NoRunner", "example.invalid/no-such-runtime:1", "kubectl -n default describe sandboxclaim"} {
		assert.Check(t, is.ErrorContains(err, want))
	}
	rec.Errorf("%v", err) // as New would
	finish(rec)
	text := reportOf(rec)
	t.Logf("the report:\n%s", text)
	assert.Check(t, is.Contains(text, "Warning"))
	assert.Check(t, is.Contains(text, "NoRunner"))
	assert.Check(t, is.Contains(text, "phase Failed reason=NoRunner"))
}

// TestReadyTimeoutExplainsItself: a sandbox that never becomes Ready fails
// New with the phase, the limit that ran out and the last state seen, not
// a bare context error.
func TestReadyTimeoutExplainsItself(t *testing.T) {
	c := testCluster(t)
	createTemplate(t, c, "never-ready-template", corev1.Container{
		Name: "python-runtime", Image: "us-central1-docker.pkg.dev/k8s-staging-images/agent-sandbox/python-runtime-sandbox:latest-main",
		Ports: []corev1.ContainerPort{{ContainerPort: 8888}},
		ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(9999)}, // nothing listens there
		}},
	})
	rec := &recorder{name: "TestNeverReady"}
	var err error
	rec.run(func() {
		_, err = NewE(context.Background(), rec, "never-ready-template", WithReadyTimeout(1500*time.Millisecond))
	})
	finish(rec)
	assert.Assert(t, err != nil)
	msg := err.Error()
	for _, want := range []string{
		`sandbox for template "never-ready-template" (claim default/sandboxtest-`, "not Ready after ",
		"its ready timeout ran out (1.5s; set by WithReadyTimeout or SANDBOXTEST_READY_TIMEOUT)",
		"; last state: claim Ready=False reason=",
		"claim Ready=False reason=", "pod sandboxtest-", "Running", "look: kubectl -n default describe sandboxclaim sandboxtest-",
	} {
		assert.Check(t, is.Contains(msg, want))
	}
	assert.Check(t, !strings.Contains(msg, "context deadline exceeded"), msg)
	t.Logf("the message: %s", msg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rec = &recorder{name: "TestNeverReadyCtx"}
	rec.run(func() { _, err = NewE(ctx, rec, "never-ready-template") })
	finish(rec)
	assert.Check(t, is.ErrorContains(err, ": the caller's context ended; last state: claim"))
	assert.Check(t, !strings.Contains(err.Error(), "context deadline exceeded"), err.Error())
}
