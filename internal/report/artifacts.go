package report

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/kube"
)

// artifactOutputMax bounds each stream of each command in commands.txt.
const artifactOutputMax = 1 << 20

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

// WriteArtifacts writes everything gathered under
// root/<test>/<claim>/ (nothing when root is "") and returns that
// directory: the objects as YAML, events.txt, timeline.txt, the full logs
// under logs/, and commands.txt. The error lists the files not written.
func WriteArtifacts(root string, rd Data) (string, error) {
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
	for _, e := range timeline(d, rd.Observed) {
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
	fmt.Fprintf(&b, "# last %d calls (oldest first)\n", OpsMax)
	for _, op := range rd.Ops {
		fmt.Fprintf(&b, "%s\t%s\texit=%d\tbytes=%d\t%s\t%s", op.At.UTC().Format(time.RFC3339Nano), op.Op, op.ExitCode, op.Bytes, op.Duration, op.What)
		if op.Err != "" {
			fmt.Fprintf(&b, "\terror=%s", oneLine(op.Err))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\n# the last %d commands, with their output\n", len(rd.History))
	for i, c := range rd.History {
		fmt.Fprintf(&b, "\n## %d. %s\nexit code: %d\nduration: %s\n", i+1, c.Cmd, c.ExitCode, c.Duration)
		fmt.Fprintf(&b, "--- stdout (%d bytes)\n%s\n--- stderr (%d bytes)\n%s\n", len(c.Stdout), clipBytes(c.Stdout, artifactOutputMax), len(c.Stderr), clipBytes(c.Stderr, artifactOutputMax))
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
