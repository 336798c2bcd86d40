package sandboxtest

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Result is what a command run in a sandbox did.
type Result struct {
	Cmd      string
	Stdout   string
	Stderr   string
	ExitCode int
	Duration time.Duration
	Sandbox  string // claim namespace/name, for messages
}

// None, as Expected.Out or Expected.Err, requires the stream to be empty;
// an empty string means "not checked".
const None = "[sandboxtest: nothing]"

// Expected is what Result.Assert checks: the exit code always, the other
// fields when set. Out and Err match exactly (None: empty), the Contains
// fields as substrings, the Matches fields as regular expressions.
type Expected struct {
	ExitCode    int
	Out, Err    string
	OutContains string
	ErrContains string
	OutMatches  string
	ErrMatches  string
}

// TestingT is what Assert needs of a test.
type TestingT interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
}

// Assert fails t, printing the command, exit code, duration, the tails of
// stdout and stderr, and every unmet expectation, unless r meets exp.
func (r *Result) Assert(t TestingT, exp Expected) {
	t.Helper()
	if problems := r.Compare(exp); len(problems) > 0 {
		fatalf(t, "%s", r.failure(problems))
	}
}

// Compare returns one line (or diff) per unmet expectation; none when r meets exp.
func (r *Result) Compare(exp Expected) []string {
	var out []string
	if r.ExitCode != exp.ExitCode {
		out = append(out, fmt.Sprintf("exit code is %d, want %d", r.ExitCode, exp.ExitCode))
	}
	out = append(out, checkStream("stdout", r.Stdout, exp.Out, exp.OutContains, exp.OutMatches)...)
	out = append(out, checkStream("stderr", r.Stderr, exp.Err, exp.ErrContains, exp.ErrMatches)...)
	return out
}

func checkStream(name, got, exact, contains, matches string) []string {
	var out []string
	switch {
	case exact == None && got != "":
		out = append(out, fmt.Sprintf("%s is not empty (%d bytes)", name, len(got)))
	case exact != "" && exact != None && got != exact:
		out = append(out, fmt.Sprintf("%s differs (-want +got):\n%s", name, cmp.Diff(exact, got)))
	}
	if contains != "" && !strings.Contains(got, contains) {
		out = append(out, fmt.Sprintf("%s does not contain %q", name, contains))
	}
	if matches != "" {
		re, err := regexp.Compile(matches)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s pattern %q does not compile: %v", name, matches, err))
		case !re.MatchString(got):
			out = append(out, fmt.Sprintf("%s does not match %q", name, matches))
		}
	}
	return out
}

const tailLines = 20

func (r *Result) failure(problems []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sandboxtest: command did not do what was expected\n")
	fmt.Fprintf(&b, "command:   %s\n", r.Cmd)
	if r.Sandbox != "" {
		fmt.Fprintf(&b, "sandbox:   %s\n", r.Sandbox)
	}
	fmt.Fprintf(&b, "exit code: %d\nduration:  %s\n", r.ExitCode, r.Duration.Round(time.Millisecond))
	writeTail(&b, "stdout", r.Stdout)
	writeTail(&b, "stderr", r.Stderr)
	fmt.Fprintf(&b, "unmet:\n")
	for _, p := range problems {
		fmt.Fprintf(&b, "  - %s\n", strings.ReplaceAll(p, "\n", "\n    "))
	}
	return b.String()
}

func writeTail(b *strings.Builder, name, s string) {
	if s == "" {
		fmt.Fprintf(b, "%s:    (empty)\n", name)
		return
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	head := fmt.Sprintf("%s:", name)
	if len(lines) > tailLines {
		head = fmt.Sprintf("%s (last %d of %d lines):", name, tailLines, len(lines))
		lines = lines[len(lines)-tailLines:]
	}
	fmt.Fprintf(b, "%s\n", head)
	for _, l := range lines {
		if len(l) > 500 {
			l = l[:500] + "…"
		}
		fmt.Fprintf(b, "  | %s\n", l)
	}
}
