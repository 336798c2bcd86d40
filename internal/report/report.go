// Package report renders the failure report of a sandbox whose test
// failed, from plain data (what the cluster said, what the sandbox was
// asked to do), and writes the full material as artifacts.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// Bounds of the report.
const (
	MaxLines        = 200
	LineWidth       = 300
	timelineMax     = 40
	eventsMax       = 30
	logLines        = 20
	OpsMax          = 10 // calls a Trail remembers
	ObservationsMax = 50 // states a Trail remembers
)

// HeaderPrefix starts every report's first line.
const HeaderPrefix = "sandboxtest: failure report for "

// ArtifactsEnv names the variable whose directory receives the artifacts;
// the report mentions it when it is unset.
const ArtifactsEnv = "SANDBOXTEST_ARTIFACTS"

// Op is one call made to the sandbox.
type Op struct {
	At       time.Time
	Op       string // run, write, read, list, exists
	What     string // the command or the path
	ExitCode int    // run
	Bytes    int    // write, read: bytes; list: entries; exists: 1 when it exists
	Duration time.Duration
	Err      string
}

// Observation is a state of the claim, Sandbox and pod seen while waiting.
type Observation struct {
	At    time.Time
	State string
}

// Command is a command run in the sandbox, with its output.
type Command struct {
	Cmd            string
	Stdout, Stderr string
	ExitCode       int
	Duration       time.Duration
}

// Trail keeps what a sandbox did for its report: the last OpsMax calls
// and the first ObservationsMax states. The zero value is ready; it is
// safe for concurrent use.
type Trail struct {
	mu       sync.Mutex
	ops      []Op
	observed []Observation
}

// Call remembers a call, forgetting the oldest beyond OpsMax.
func (t *Trail) Call(op Op) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops = append(t.ops, op)
	if len(t.ops) > OpsMax {
		t.ops = t.ops[len(t.ops)-OpsMax:]
	}
}

// Observe remembers a state seen now, up to ObservationsMax of them.
func (t *Trail) Observe(state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.observed) < ObservationsMax {
		t.observed = append(t.observed, Observation{At: time.Now(), State: state})
	}
}

// Ops returns the calls remembered, oldest first.
func (t *Trail) Ops() []Op {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Op(nil), t.ops...)
}

// Observed returns the states remembered, oldest first.
func (t *Trail) Observed() []Observation {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Observation(nil), t.observed...)
}

// Data is everything a report shows.
type Data struct {
	Test, Template, Pool, Start     string // Start: warm, cold or "" (never ready)
	Namespace, Claim, Sandbox, Pod  string
	PodIP, Node, Mode, Route, RunID string
	TraceID                         string
	Created                         time.Time // when the sandbox was asked for: the timeline's origin
	Diag                            *kube.Diagnostics
	Observed                        []Observation
	Ops                             []Op
	History                         []Command
}

// Write writes the artifacts under root (nothing when root is "") with
// the rendered report as report.txt, and returns the report.
func Write(root string, d Data) string {
	dir, err := WriteArtifacts(root, d)
	text := Render(d, dir, err)
	if dir != "" {
		if werr := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(text+"\n"), 0o644); werr != nil {
			text += fmt.Sprintf("\n(report.txt not written: %v)", werr)
		}
	}
	return text
}

// Render renders the report in at most MaxLines lines of at most
// LineWidth bytes (plus an ellipsis). artifactsDir and artifactsErr are
// what WriteArtifacts returned.
func Render(rd Data, artifactsDir string, artifactsErr error) string {
	var lines []string
	add := func(format string, args ...any) {
		for _, l := range strings.Split(fmt.Sprintf(format, args...), "\n") {
			lines = append(lines, clip(l, LineWidth))
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

	add("%s%s/%s (test %s failed; gathered in %s)", HeaderPrefix, rd.Namespace, rd.Claim, rd.Test, d.Took.Round(time.Millisecond))
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
	tl := timeline(d, rd.Observed)
	origin := rd.Created
	if origin.IsZero() && len(tl) > 0 {
		origin = tl[0].Time
	}
	if len(tl) > timelineMax {
		add("  (%d earlier entries omitted)", len(tl)-timelineMax)
		tl = tl[len(tl)-timelineMax:]
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
	if len(evs) > eventsMax {
		add("  (%d earlier events omitted)", len(evs)-eventsMax)
		evs = evs[len(evs)-eventsMax:]
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
		renderLog(add, l, logLines/max(1, len(sandboxLogs)), nil)
	}
	add("== router log")
	notGathered(kube.SectionRouterLog)
	for i, l := range routerLogs {
		if i > 0 {
			add("  (also router pod %s: its log is in the artifacts)", l.Pod)
			continue
		}
		renderLog(add, l, logLines, []string{rd.Sandbox, rd.PodIP})
	}

	add("== last %d calls to the sandbox (oldest first)", OpsMax)
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
			if c, ok := findCommand(rd.History, op); ok && strings.TrimSpace(c.Stderr) != "" {
				add("      stderr: %s", oneLine(lastLine(c.Stderr)))
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
		add("== artifacts: set %s=<dir> to keep the objects as YAML, full logs and the command history", ArtifactsEnv)
	}
	if len(lines) > MaxLines {
		cut := len(lines) - MaxLines + 1
		lines = append(lines[:MaxLines-2], fmt.Sprintf("  (%d more lines cut)", cut), lines[len(lines)-1])
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

// findCommand finds the command of a run call in the history, newest first.
func findCommand(history []Command, op Op) (Command, bool) {
	for i := len(history) - 1; i >= 0; i-- {
		if c := history[i]; c.Cmd == op.What && c.ExitCode == op.ExitCode && c.Duration == op.Duration {
			return c, true
		}
	}
	return Command{}, false
}

// timeline merges the objects' timeline with the states seen, by time.
func timeline(d *kube.Diagnostics, observed []Observation) []kube.TimelineEntry {
	tl := append([]kube.TimelineEntry(nil), d.Timeline...)
	for _, o := range observed {
		tl = append(tl, kube.TimelineEntry{Time: o.At, Object: "seen", What: o.State})
	}
	// insertion sort: stable, and the slices are short
	for i := 1; i < len(tl); i++ {
		for j := i; j > 0 && tl[j].Time.Before(tl[j-1].Time); j-- {
			tl[j], tl[j-1] = tl[j-1], tl[j]
		}
	}
	return tl
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

// clip cuts s to n bytes, on a rune boundary, marking the cut.
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
