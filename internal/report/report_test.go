package report

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// sample is the data of a sandbox that ran a failing command.
func sample() Data {
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.Local)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-1", Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7"},
	}
	return Data{
		Test: "TestX/sub case", Template: "tmpl", Pool: "tmpl", Start: "warm",
		Namespace: "default", Claim: "claim-1", Sandbox: "sb-1", Pod: "pod-1", PodIP: "10.0.0.7", Node: "node-a",
		Mode: "tunnel", Route: "tunnel to default/sandbox-router", RunID: "run-1", TraceID: "abc123",
		Created: t0,
		Diag: &kube.Diagnostics{
			Pod: pod,
			Timeline: []kube.TimelineEntry{
				{Time: t0.Add(2 * time.Second), Object: "claim claim-1", What: "Ready=True"},
				{Time: t0, Object: "claim claim-1", What: "created"},
			},
			Events: []kube.EventEntry{{First: t0, Last: t0.Add(time.Second), Count: 2, Object: "pod/pod-1", Type: "Normal", Reason: "Scheduled", Message: "assigned", Source: "scheduler"}},
			Logs: []kube.PodLog{
				{Role: "sandbox", Pod: "pod-1", Container: "main", Text: "started\nPOST /execute 200\n"},
				{Role: "router", Pod: "router-1", Container: "router", Text: "other\nproxy to sb-1\nother again\n"},
				{Role: "router", Pod: "router-2", Container: "router", Err: errors.New("no answer")},
			},
			Problems: map[string]string{},
		},
		Observed: []Observation{{At: t0.Add(1500 * time.Millisecond), State: "claim Ready=False reason=Pending"}},
		Ops: []Op{
			{At: t0.Add(3 * time.Second), Op: "run", What: "echo hi", Duration: 10 * time.Millisecond},
			{At: t0.Add(4 * time.Second), Op: "run", What: "sh -c 'exit 3'", ExitCode: 3, Duration: 20 * time.Millisecond},
			{At: t0.Add(5 * time.Second), Op: "write", What: "a.txt", Bytes: 3},
			{At: t0.Add(6 * time.Second), Op: "exists", What: "nothing"},
			{At: t0.Add(7 * time.Second), Op: "read", What: "gone.txt", Err: "read failed\nbadly"},
		},
		History: []Command{
			{Cmd: "echo hi", Stdout: "hi\n", Duration: 10 * time.Millisecond},
			{Cmd: "sh -c 'exit 3'", Stderr: "first\noops\n", ExitCode: 3, Duration: 20 * time.Millisecond},
		},
	}
}

// TestRender: every section of the report, from plain data.
func TestRender(t *testing.T) {
	out := Render(sample(), "", nil)
	t.Logf("the report:\n%s", out)
	for _, want := range []string{
		HeaderPrefix + "default/claim-1 (test TestX/sub case failed",
		"  pool:      tmpl (warm start)", "  pod:       pod-1  ip 10.0.0.7  phase Running", "  node:      node-a",
		"  mode:      tunnel: tunnel to default/sandbox-router", "  run id:    run-1 (label " + kube.LabelRunID + ")", "  trace id:  abc123",
		"Scheduled: assigned (x2)",
		"pod pod-1 container main (2 lines):", "  | POST /execute 200",
		"pod router-1 container router (1 lines):", "  | proxy to sb-1",
		"(also router pod router-2: its log is in the artifacts)",
		"run    exit 0", "run    exit 3", "      stderr: oops", "write  ok", "a.txt (3 bytes)", "nothing (absent)",
		"read   ERROR", "      error: read failed ⏎ badly",
		"== artifacts: set SANDBOXTEST_ARTIFACTS=<dir>",
	} {
		assert.Check(t, is.Contains(out, want))
	}
	assert.Check(t, !strings.Contains(out, "| other"), "only the router lines that mention the sandbox")
	// The timeline merges the API's entries and the states seen, by time,
	// with offsets from Created.
	tl := section(out, "== timeline")
	assert.Assert(t, is.Len(tl, 3), "%q", tl)
	assert.Check(t, is.Contains(tl[0], "(+0s)"))
	assert.Check(t, is.Contains(tl[0], "created"))
	assert.Check(t, is.Contains(tl[1], "(+1.5s)"))
	assert.Check(t, is.Contains(tl[1], "seen"))
	assert.Check(t, is.Contains(tl[2], "Ready=True"))
}

// section returns the lines of the report's section that starts with head.
func section(report, head string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(report, "\n") {
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

// TestReportSaysWhatIsMissing: a section that could not be gathered says why.
func TestReportSaysWhatIsMissing(t *testing.T) {
	rd := Data{Test: "TestX", Template: "tmpl", Namespace: "default", Claim: "claim-x", RunID: "r"}
	rd.Diag = &kube.Diagnostics{Problems: map[string]string{
		kube.SectionClaim: "reading SandboxClaim default/claim-x: no answer within 5s", kube.SectionEvents: "skipped",
	}}
	out := Render(rd, "", nil)
	assert.Check(t, is.Contains(out, "(claim not gathered: reading SandboxClaim default/claim-x: no answer within 5s)"))
	assert.Check(t, is.Contains(out, "(events not gathered: skipped)"))
	assert.Check(t, is.Contains(out, "  pool:      (not resolved)"))
	assert.Check(t, is.Contains(out, "  sandbox:   (none yet)"))
	assert.Check(t, is.Contains(out, "set SANDBOXTEST_ARTIFACTS=<dir>"))

	rd.Diag = nil // nothing gathered at all
	out = Render(rd, "", nil)
	assert.Check(t, is.Contains(out, "== timeline"))
	assert.Check(t, is.Contains(out, "  (nothing)"))
}

// TestReportIsBounded: however much was gathered, the report stays within
// MaxLines lines of LineWidth characters.
func TestReportIsBounded(t *testing.T) {
	now := time.Now()
	d := &kube.Diagnostics{Problems: map[string]string{}}
	for i := range 500 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		d.Timeline = append(d.Timeline, kube.TimelineEntry{Time: at, Object: "pod p", What: strings.Repeat("w", 1000)})
		d.Events = append(d.Events, kube.EventEntry{First: at, Last: at, Object: "pod/p", Type: "Warning", Reason: "BackOff", Message: "line1\nline2"})
	}
	long := strings.Repeat("log line\n", 100000)
	d.Logs = []kube.PodLog{{Role: "sandbox", Pod: "p", Container: "a", Text: long}, {Role: "sandbox", Pod: "p", Container: "b", Text: long},
		{Role: "router", Pod: "r1", Container: "r", Text: long}, {Role: "router", Pod: "r2", Container: "r", Text: long}}
	rd := Data{Test: "TestBig", Template: "t", Namespace: "default", Claim: "c", Diag: d}
	for range OpsMax {
		rd.Ops = append(rd.Ops, Op{At: now, Op: "run", What: strings.Repeat("x", 5000), ExitCode: 1, Err: "boom\nboom"})
	}
	for i := range 100 {
		rd.Observed = append(rd.Observed, Observation{At: now.Add(time.Duration(i) * time.Second), State: "waiting"})
	}
	out := Render(rd, "/tmp/x", nil)
	lines := strings.Split(out, "\n")
	assert.Check(t, len(lines) <= MaxLines, "%d lines", len(lines))
	for _, l := range lines {
		assert.Check(t, len(l) <= LineWidth+len("…"), "a line of %d bytes", len(l))
	}
	for _, want := range []string{"== identity", "== timeline", "earlier entries omitted", "== events", "earlier events omitted",
		"== sandbox pod log", "container a (last 10 of 100000 lines)", "== router log", "also router pod r2",
		"== last 10 calls", "error: boom ⏎ boom", "== artifacts: /tmp/x"} {
		assert.Check(t, is.Contains(out, want))
	}
}

func TestClipKeepsRunes(t *testing.T) {
	assert.Check(t, is.Equal(clip("abc", 3), "abc"))
	assert.Check(t, is.Equal(clip("aéb", 2), "a…"), "no half of é")
}

func TestArtifactsPath(t *testing.T) {
	assert.Check(t, is.Equal(artifactsPath("/a", "TestX/sub case/../x", "claim-1"), "/a/TestX/sub_case/_/x/claim-1"))
	assert.Check(t, is.Equal(artifactsPath("/a", "TestÜ", ""), "/a/Test_/no-claim"))
}

// TestWrite: the artifacts hold the objects, events, timeline, full logs
// and commands with their output, and report.txt is the report logged.
func TestWrite(t *testing.T) {
	root := t.TempDir()
	rd := sample()
	text := Write(root, rd)
	dir := filepath.Join(root, "TestX", "sub_case", "claim-1")
	assert.Check(t, is.Contains(text, "== artifacts: "+dir+" (objects as YAML"))
	for file, wants := range map[string][]string{
		"pod.yaml":                        {"kind: Pod", "name: pod-1", "podIP: 10.0.0.7"},
		"events.txt":                      {"Normal\tx2\tpod/pod-1\tScheduled\tassigned", "from scheduler"},
		"timeline.txt":                    {"claim claim-1\tcreated", "seen\tclaim Ready=False reason=Pending", "Ready=True"},
		"logs/sandbox-pod-1-main.log":     {"started\nPOST /execute 200\n"},
		"logs/router-router-1-router.log": {"proxy to sb-1"},
		"logs/router-router-2-router.log": {"# not gathered: no answer"},
		"commands.txt":                    {"# last 10 calls", "\twrite\texit=0\tbytes=3\t", "error=read failed ⏎ badly", "## 2. sh -c 'exit 3'\nexit code: 3", "--- stderr (11 bytes)\nfirst\noops\n"},
		"report.txt":                      {text},
	} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if !assert.Check(t, err) {
			continue
		}
		for _, want := range wants {
			assert.Check(t, is.Contains(string(data), want), file)
		}
	}
	// Events and timeline lines are ordered by time.
	tl, _ := os.ReadFile(filepath.Join(dir, "timeline.txt"))
	lines := strings.Split(strings.TrimSpace(string(tl)), "\n")
	assert.Assert(t, is.Len(lines, 3))
	assert.Check(t, strings.HasSuffix(lines[0], "created") && strings.HasSuffix(lines[2], "Ready=True"), "%q", lines)
}

// TestWriteWithoutRoot writes nothing and says how to get the artifacts.
func TestWriteWithoutRoot(t *testing.T) {
	dir, err := WriteArtifacts("", sample())
	assert.Check(t, is.Equal(dir, ""))
	assert.Check(t, err)
	assert.Check(t, is.Contains(Write("", sample()), "set SANDBOXTEST_ARTIFACTS=<dir>"))
}

// TestWriteUnwritable: the report says why the artifacts are missing.
func TestWriteUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	assert.NilError(t, os.WriteFile(file, nil, 0o644))
	text := Write(file, sample()) // a file where the directory should be
	assert.Check(t, is.Contains(text, "== artifacts: not written: mkdir "+file+": not a directory"))
}

func TestClipBytes(t *testing.T) {
	assert.Check(t, is.Equal(clipBytes("abcdef", 6), "abcdef"))
	assert.Check(t, is.Equal(clipBytes("abcdef", 2), "ab\n[… 4 more bytes]"))
}

// TestTrail keeps the last OpsMax calls and the first ObservationsMax states.
func TestTrail(t *testing.T) {
	var tr Trail
	for i := range OpsMax + 5 {
		tr.Call(Op{Op: "run", ExitCode: i})
	}
	for range ObservationsMax + 5 {
		tr.Observe("waiting")
	}
	tr.Observe("the last")
	ops := tr.Ops()
	assert.Assert(t, is.Len(ops, OpsMax))
	assert.Check(t, is.Equal(ops[0].ExitCode, 5))
	assert.Check(t, is.Equal(ops[OpsMax-1].ExitCode, OpsMax+4))
	obs := tr.Observed()
	assert.Assert(t, is.Len(obs, ObservationsMax))
	assert.Check(t, is.Equal(obs[ObservationsMax-1].State, "waiting"), "later states are dropped")
	assert.Check(t, !obs[0].At.IsZero())

	ops[0].Op = "changed" // a copy
	assert.Check(t, is.Equal(tr.Ops()[0].Op, "run"))
}
