package sandboxtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// The failure report: when a test that used a sandbox has failed, the
// sandbox's cleanup logs, before deleting anything, a bounded report of
// what the cluster and the sandbox did, and writes the full material to
// $SANDBOXTEST_ARTIFACTS/<TestName>/<claim>/ when that is set.

// Bounds of the report.
const (
	reportMaxLines     = 200
	reportLineWidth    = 300
	reportTimelineMax  = 40
	reportEventsMax    = 30
	reportLogLines     = 20
	reportBudget       = 30 * time.Second // all gathering, each call bounded by kube.DefaultCallTimeout
	opsSize            = 10               // calls remembered for the report
	observationsMax    = 50               // states seen while waiting
	artifactOutputMax  = 1 << 20          // of each stream of each command in commands.txt
	artifactsEnv       = "SANDBOXTEST_ARTIFACTS"
	reportDisabledEnv  = "SANDBOXTEST_REPORT" // false (0) turns the report off
	reportHeaderPrefix = "sandboxtest: failure report for "
)

// opRecord is one call made to the sandbox.
type opRecord struct {
	At       time.Time
	Op       string // run, write, read, list, exists
	What     string // the command or the path
	ExitCode int    // run
	Bytes    int    // write, read: bytes; list: entries; exists: 1 when it exists
	Duration time.Duration
	Err      string
}

// observation is a state of the claim, Sandbox and pod that New saw while waiting.
type observation struct {
	At    time.Time
	State string
}

// record remembers a call for the report (the last opsSize) and, for a
// command, counts it in the summary.
func (sb *Sandbox) record(op opRecord) {
	sb.mu.Lock()
	sb.ops = append(sb.ops, op)
	if len(sb.ops) > opsSize {
		sb.ops = sb.ops[len(sb.ops)-opsSize:]
	}
	sb.mu.Unlock()
	if op.Op == "run" && op.Err == "" {
		sb.sum.update(func(s *SandboxSummary) {
			s.Commands++
			s.CommandTimeMS += ms(op.Duration)
		})
	}
}

func (sb *Sandbox) observe(state string) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if len(sb.observed) < observationsMax {
		sb.observed = append(sb.observed, observation{At: time.Now(), State: state})
	}
}

// reportData is everything the report shows; rendering it is pure.
type reportData struct {
	Test, Template, Pool, Start     string
	Namespace, Claim, Sandbox, Pod  string
	PodIP, Node, Mode, Route, RunID string
	TraceID                         string
	Created                         time.Time
	Diag                            *kube.Diagnostics
	Observed                        []observation
	Ops                             []opRecord
	History                         []Result
}

// failureReport gathers and logs the report, and writes the artifacts.
func (sb *Sandbox) failureReport() {
	if !envSwitch(reportDisabledEnv, true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportBudget)
	defer cancel()
	d := sb.c.clients.Gather(ctx, kube.DiagnosticsRequest{
		Namespace: sb.s.namespace, Claim: sb.claim, Sandbox: sb.ready.SandboxName, Pod: sb.ready.PodName,
		RouterNamespace: sb.s.namespace,
	})
	rd := sb.reportData(d)
	dir, err := writeArtifacts(os.Getenv(artifactsEnv), rd)
	text := renderReport(rd, dir, err)
	if dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "report.txt"), []byte(text+"\n"), 0o644)
	}
	sb.t.Logf("%s", text)
}

func (sb *Sandbox) reportData(d *kube.Diagnostics) reportData {
	sb.mu.Lock()
	ops := append([]opRecord(nil), sb.ops...)
	observed := append([]observation(nil), sb.observed...)
	sb.mu.Unlock()
	rd := reportData{
		Test: sb.t.Name(), Template: sb.template, Pool: sb.pool.Name,
		Namespace: sb.s.namespace, Claim: sb.claim, Sandbox: sb.ready.SandboxName, Pod: sb.ready.PodName,
		PodIP: sb.ready.PodIP, Node: sb.ready.NodeName, RunID: RunID(), TraceID: sb.traceID(),
		Created: sb.created, Diag: d, Observed: observed, Ops: ops, History: sb.History(),
	}
	if sb.ready.PodName != "" {
		rd.Start = "cold"
		if sb.ready.Warm {
			rd.Start = "warm"
		}
	}
	if sb.c != nil {
		rd.Mode = string(sb.c.choice.Mode)
		if sb.c.conn != nil {
			rd.Route = sb.c.conn.Describe()
		}
	}
	if d != nil {
		if rd.Sandbox == "" && d.Sandbox != nil {
			rd.Sandbox = d.Sandbox.Name
		}
		if p := d.Pod; p != nil {
			if rd.Pod == "" {
				rd.Pod = p.Name
			}
			if rd.PodIP == "" {
				rd.PodIP = p.Status.PodIP
			}
			if rd.Node == "" {
				rd.Node = p.Spec.NodeName
			}
		}
	}
	return rd
}

// renderReport renders the report in at most reportMaxLines lines.
func renderReport(rd reportData, artifactsDir string, artifactsErr error) string {
	var lines []string
	add := func(format string, args ...any) {
		for _, l := range strings.Split(fmt.Sprintf(format, args...), "\n") {
			lines = append(lines, clip(l, reportLineWidth))
		}
	}
	d := rd.Diag
	if d == nil {
		d = &kube.Diagnostics{Problems: map[string]string{}}
	}
	notGathered := func(section string) {
		if why, ok := d.Problems[section]; ok {
			add("  (%s not gathered: %s)", section, why)
		}
	}

	add("%s%s/%s (test %s failed; gathered in %s)", reportHeaderPrefix, rd.Namespace, rd.Claim, rd.Test, d.Took.Round(time.Millisecond))
	add("== identity")
	add("  template:  %s", rd.Template)
	pool := or(rd.Pool, "(not resolved)")
	if rd.Start != "" {
		pool += " (" + rd.Start + " start)"
	}
	add("  pool:      %s", pool)
	add("  claim:     %s/%s", rd.Namespace, rd.Claim)
	add("  sandbox:   %s", or(rd.Sandbox, "(none yet)"))
	pod := or(rd.Pod, "(none yet)")
	if rd.PodIP != "" {
		pod += "  ip " + rd.PodIP
	}
	if d.Pod != nil {
		pod += "  phase " + kube.PodState(d.Pod)
	}
	add("  pod:       %s", pod)
	add("  node:      %s", or(rd.Node, "(not scheduled)"))
	mode := or(rd.Mode, "(not connected)")
	if rd.Route != "" {
		mode += ": " + rd.Route
	}
	add("  mode:      %s", mode)
	add("  run id:    %s (label %s)", rd.RunID, kube.LabelRunID)
	if rd.TraceID != "" {
		add("  trace id:  %s", rd.TraceID)
	}

	add("== timeline (claim, Sandbox and pod conditions; API times have 1s resolution, \"seen\" lines are sandboxtest's own)")
	notGathered(kube.SectionClaim)
	notGathered(kube.SectionSandbox)
	notGathered(kube.SectionPod)
	var tl []kube.TimelineEntry
	tl = append(tl, d.Timeline...)
	for _, o := range rd.Observed {
		tl = append(tl, kube.TimelineEntry{Time: o.At, Object: "seen", What: o.State})
	}
	sortTimeline(tl)
	origin := rd.Created
	if origin.IsZero() && len(tl) > 0 {
		origin = tl[0].Time
	}
	if len(tl) > reportTimelineMax {
		add("  (%d earlier entries omitted)", len(tl)-reportTimelineMax)
		tl = tl[len(tl)-reportTimelineMax:]
	}
	for _, e := range tl {
		add("  %s %-24s %s", stamp(e.Time, origin), e.Object, e.What)
	}
	if len(tl) == 0 {
		add("  (nothing)")
	}

	add("== events (of the claim, the Sandbox and the pod)")
	notGathered(kube.SectionEvents)
	evs := d.Events
	if len(evs) > reportEventsMax {
		add("  (%d earlier events omitted)", len(evs)-reportEventsMax)
		evs = evs[len(evs)-reportEventsMax:]
	}
	for _, e := range evs {
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		add("  %s %-7s %-28s %s: %s%s", stamp(e.Last, origin), e.Type, e.Object, e.Reason, oneLine(e.Message), count)
	}
	if len(evs) == 0 && d.Problems[kube.SectionEvents] == "" {
		add("  (none)")
	}

	var sandboxLogs, routerLogs []kube.PodLog
	for _, l := range d.Logs {
		if l.Role == "sandbox" {
			sandboxLogs = append(sandboxLogs, l)
		} else {
			routerLogs = append(routerLogs, l)
		}
	}
	add("== sandbox pod log")
	notGathered(kube.SectionSandboxLg)
	for _, l := range sandboxLogs {
		renderLog(add, l, reportLogLines/max(1, len(sandboxLogs)), nil)
	}
	add("== router log")
	notGathered(kube.SectionRouterLog)
	for i, l := range routerLogs {
		if i > 0 {
			add("  (also router pod %s: its log is in the artifacts)", l.Pod)
			continue
		}
		renderLog(add, l, reportLogLines, []string{rd.Sandbox, rd.PodIP})
	}

	add("== last %d calls to the sandbox (oldest first)", opsSize)
	for i, op := range rd.Ops {
		outcome := "ok"
		switch {
		case op.Err != "":
			outcome = "ERROR"
		case op.Op == "run":
			outcome = fmt.Sprintf("exit %d", op.ExitCode)
		}
		detail := op.What
		switch op.Op {
		case "write", "read":
			detail += fmt.Sprintf(" (%d bytes)", op.Bytes)
		case "list":
			detail += fmt.Sprintf(" (%d entries)", op.Bytes)
		case "exists":
			detail += map[bool]string{true: " (exists)", false: " (absent)"}[op.Bytes == 1]
		}
		add("  %2d. %s %-6s %-8s %8s  %s", i+1, op.At.Format("15:04:05.000"), op.Op, outcome, op.Duration.Round(time.Millisecond), oneLine(detail))
		if op.Err != "" {
			add("      error: %s", oneLine(op.Err))
		} else if op.Op == "run" && op.ExitCode != 0 {
			if r, ok := findResult(rd.History, op); ok && strings.TrimSpace(r.Stderr) != "" {
				add("      stderr: %s", oneLine(lastLine(r.Stderr)))
			}
		}
	}
	if len(rd.Ops) == 0 {
		add("  (none)")
	}

	switch {
	case artifactsErr != nil:
		add("== artifacts: not written: %v", artifactsErr)
	case artifactsDir != "":
		add("== artifacts: %s (objects as YAML, events, full logs, command history)", artifactsDir)
	default:
		add("== artifacts: set %s=<dir> to keep the objects as YAML, full logs and the command history", artifactsEnv)
	}
	if len(lines) > reportMaxLines {
		cut := len(lines) - reportMaxLines + 1
		lines = append(lines[:reportMaxLines-2], fmt.Sprintf("  (%d more lines cut)", cut), lines[len(lines)-1])
	}
	return strings.Join(lines, "\n")
}

// renderLog adds the last n lines of a log, preferring those that mention one of prefer.
func renderLog(add func(string, ...any), l kube.PodLog, n int, prefer []string) {
	if l.Err != nil {
		add("  pod %s container %s: (not gathered: %v)", l.Pod, l.Container, l.Err)
		return
	}
	all := splitLines(l.Text)
	if len(all) == 0 {
		add("  pod %s container %s: (empty log)", l.Pod, l.Container)
		return
	}
	shown, what := all, "last"
	var matching []string
	for _, line := range all {
		for _, p := range prefer {
			if p != "" && strings.Contains(line, p) {
				matching = append(matching, line)
				break
			}
		}
	}
	if len(matching) > 0 {
		shown, what = matching, fmt.Sprintf("lines mentioning %s, last", strings.Join(nonEmpty(prefer), " or "))
	}
	if len(shown) > n {
		add("  pod %s container %s (%s %d of %d lines):", l.Pod, l.Container, what, n, len(shown))
		shown = shown[len(shown)-n:]
	} else {
		add("  pod %s container %s (%d lines):", l.Pod, l.Container, len(shown))
	}
	for _, line := range shown {
		add("  | %s", line)
	}
}

func findResult(history []Result, op opRecord) (Result, bool) {
	for i := len(history) - 1; i >= 0; i-- {
		if r := history[i]; r.Cmd == op.What && r.ExitCode == op.ExitCode && r.Duration == op.Duration {
			return r, true
		}
	}
	return Result{}, false
}

func sortTimeline(tl []kube.TimelineEntry) {
	// insertion sort: stable, and the slices are short
	for i := 1; i < len(tl); i++ {
		for j := i; j > 0 && tl[j].Time.Before(tl[j-1].Time); j-- {
			tl[j], tl[j-1] = tl[j-1], tl[j]
		}
	}
}

// stamp is a time of day with its offset from origin,
// "12:00:01.250 (+1.2s)". API times (whole seconds) are shown as such, and
// their offset is from origin's second.
func stamp(t, origin time.Time) string {
	coarse := t.Nanosecond() == 0
	s := t.Local().Format("15:04:05.000")
	if coarse {
		s = t.Local().Format("15:04:05") + "    "
		origin = origin.Truncate(time.Second)
	}
	if !origin.IsZero() {
		d := t.Sub(origin)
		sign := "+"
		if d < 0 {
			sign, d = "-", -d
		}
		if coarse {
			s += fmt.Sprintf(" (%s%s)", sign, d.Round(time.Second))
		} else {
			s += fmt.Sprintf(" (%s%s)", sign, d.Round(10*time.Millisecond))
		}
	}
	return fmt.Sprintf("%-24s", s)
}

func splitLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func lastLine(s string) string {
	l := splitLines(s)
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ⏎ ") }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

var unsafePathChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// artifactsPath is where a sandbox's artifacts go under root: one
// directory per test (subtests nested), then one per claim.
func artifactsPath(root, test, claim string) string {
	parts := []string{root}
	for _, p := range strings.Split(test, "/") {
		p = unsafePathChars.ReplaceAllString(p, "_")
		if p == "" || p == "." || p == ".." {
			p = "_"
		}
		parts = append(parts, p)
	}
	return filepath.Join(append(parts, unsafePathChars.ReplaceAllString(or(claim, "no-claim"), "_"))...)
}

// writeArtifacts writes everything gathered under root (nothing when root
// is ""), and returns the directory.
func writeArtifacts(root string, rd reportData) (string, error) {
	if root == "" {
		return "", nil
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	dir := artifactsPath(abs, rd.Test, rd.Claim)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return "", err
	}
	var errs []string
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			errs = append(errs, err.Error())
		}
	}
	d := rd.Diag
	if d == nil {
		d = &kube.Diagnostics{}
	}
	for name, data := range d.Objects() {
		write(name, data)
	}
	var b strings.Builder
	for _, e := range d.Events {
		fmt.Fprintf(&b, "%s\t%s\tx%d\t%s\t%s\t%s\t(first %s, from %s)\n", e.Last.UTC().Format(time.RFC3339), e.Type, e.Count,
			e.Object, e.Reason, oneLine(e.Message), e.First.UTC().Format(time.RFC3339), e.Source)
	}
	write("events.txt", []byte(b.String()))
	b.Reset()
	tl := append([]kube.TimelineEntry(nil), d.Timeline...)
	for _, o := range rd.Observed {
		tl = append(tl, kube.TimelineEntry{Time: o.At, Object: "seen", What: o.State})
	}
	sortTimeline(tl)
	for _, e := range tl {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339Nano), e.Object, e.What)
	}
	write("timeline.txt", []byte(b.String()))
	for _, l := range d.Logs {
		name := unsafePathChars.ReplaceAllString(l.Role+"-"+l.Pod+"-"+l.Container, "_") + ".log"
		text := l.Text
		if l.Err != nil {
			text += "\n# not gathered: " + l.Err.Error() + "\n"
		}
		write(filepath.Join("logs", name), []byte(text))
	}
	b.Reset()
	fmt.Fprintf(&b, "# last %d calls (oldest first)\n", opsSize)
	for _, op := range rd.Ops {
		fmt.Fprintf(&b, "%s\t%s\texit=%d\tbytes=%d\t%s\t%s", op.At.UTC().Format(time.RFC3339Nano), op.Op, op.ExitCode, op.Bytes, op.Duration, op.What)
		if op.Err != "" {
			fmt.Fprintf(&b, "\terror=%s", oneLine(op.Err))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n# last %d commands, with their output\n", historySize)
	for i, r := range rd.History {
		fmt.Fprintf(&b, "\n## %d. %s\nexit code: %d\nduration: %s\n", i+1, r.Cmd, r.ExitCode, r.Duration)
		fmt.Fprintf(&b, "--- stdout (%d bytes)\n%s\n--- stderr (%d bytes)\n%s\n", len(r.Stdout), clipBytes(r.Stdout, artifactOutputMax), len(r.Stderr), clipBytes(r.Stderr, artifactOutputMax))
	}
	write("commands.txt", []byte(b.String()))
	if len(errs) > 0 {
		return dir, fmt.Errorf("writing artifacts in %s: %s", dir, strings.Join(errs, "; "))
	}
	return dir, nil
}

func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("\n[… %d more bytes]", len(s)-n)
}
