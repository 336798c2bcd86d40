package sandboxtest

import (
	"fmt"
	"github.com/agentsandbox/go-sandboxtest/internal/shlex"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// recorder is a TB that records instead of failing, to test failures.
type recorder struct {
	name     string
	logs     []string
	errors   []string
	failed   bool
	skipped  bool
	cleanups []func()
}

func (r *recorder) Helper()                 {}
func (r *recorder) Name() string            { return r.name }
func (r *recorder) Logf(f string, a ...any) { r.logs = append(r.logs, fmt.Sprintf(f, a...)) }
func (r *recorder) Errorf(f string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(f, a...))
	r.failed = true
}
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...); r.FailNow() }
func (r *recorder) Skipf(f string, a ...any) {
	r.logs = append(r.logs, fmt.Sprintf(f, a...))
	r.skipped = true
	panic(stop{})
}
func (r *recorder) FailNow()         { r.failed = true; panic(stop{}) }
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) output() string   { return strings.Join(append(r.logs, r.errors...), "\n") }

type stop struct{}

// run calls f with the recorder, stopping where a real test would.
func (r *recorder) run(f func()) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f()
}

func TestAssertPasses(t *testing.T) {
	r := &Result{Cmd: "echo hi", Stdout: "hi\n", ExitCode: 0}
	rec := &recorder{}
	rec.run(func() {
		r.Assert(rec, Expected{Out: "hi\n", OutContains: "h", OutMatches: `^h.\n$`, Err: None})
	})
	assert.Check(t, !rec.failed, rec.output())
}

func TestAssertFailureSaysEverything(t *testing.T) {
	r := &Result{Cmd: "python3 x.py", Stdout: strings.Repeat("line\n", 30) + "last\n", Stderr: "boom\n",
		ExitCode: 2, Duration: 1500 * time.Millisecond, Sandbox: "default/claim-x"}
	rec := &recorder{}
	rec.run(func() {
		r.Assert(rec, Expected{ExitCode: 0, Out: "other\n", ErrContains: "nope", ErrMatches: `^ok`})
	})
	assert.Assert(t, rec.failed)
	out := rec.output()
	for _, want := range []string{
		"command:   python3 x.py", "sandbox:   default/claim-x", "exit code: 2", "duration:  1.5s",
		"stdout (last 20 of 31 lines):", "  | last", "stderr:\n  | boom",
		"exit code is 2, want 0", "stdout differs (-want +got)", "+", "stderr does not contain \"nope\"",
		"stderr does not match \"^ok\"",
	} {
		assert.Check(t, is.Contains(out, want))
	}
}

func TestCompareNoneAndBadPattern(t *testing.T) {
	r := &Result{Stdout: "x"}
	got := r.Compare(Expected{Out: None, OutMatches: "("})
	assert.Check(t, is.Len(got, 2))
	assert.Check(t, is.Contains(got[0], "stdout is not empty"))
	assert.Check(t, is.Contains(got[1], "does not compile"))
	assert.Check(t, is.Len((&Result{}).Compare(Expected{Out: None, Err: None}), 0))
}

func TestLabelValue(t *testing.T) {
	assert.Check(t, is.Equal(labelValue("TestFoo/bar baz#01"), "TestFoo_bar_baz_01"))
	long := labelValue(strings.Repeat("a", 100))
	assert.Check(t, is.Len(long, 63))
	assert.Check(t, is.Equal(labelValue("Test/_-"), "Test"))
}

func TestQuoteArgsRoundTrip(t *testing.T) {
	argv := []string{"python3", "-c", "print('x')", "a b", "it's", "", "$HOME", `back\slash`, "tab\there", "new\nline", `"dq"`, "ü", "--flag=a,b:c/d@e%f+g", "*", ";", "a\\"}
	assert.Check(t, is.Equal(quoteArgs([]string{"ls", "-la", "a/b.txt"}), "ls -la a/b.txt"))
	assert.Check(t, is.Equal(quoteArg("it's a dir"), `'it'"'"'s a dir'`))
	// The local runtime splits as Python's shlex.split does.
	got, err := shlex.Split(quoteArgs(argv))
	assert.NilError(t, err)
	assert.Check(t, is.DeepEqual(got, argv))
}

func TestNoClusterSkipsOrFails(t *testing.T) {
	t.Setenv("KUBECONFIG", t.TempDir()+"/missing")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("CI", "")
	t.Setenv("SANDBOXTEST_REQUIRE", "")
	rec := &recorder{name: "TestX"}
	rec.run(func() { New(rec, "python-sandbox-template") })
	assert.Check(t, rec.skipped, rec.output())
	assert.Check(t, !rec.failed)
	assert.Check(t, is.Contains(rec.output(), "sandboxtest-setup@latest local up"))

	t.Setenv("CI", "false") // CI read as every part of sandboxtest reads it: false is unset
	rec = &recorder{name: "TestX"}
	rec.run(func() { New(rec, "python-sandbox-template") })
	assert.Check(t, rec.skipped && !rec.failed, rec.output())

	t.Setenv("CI", "true")
	rec = &recorder{name: "TestX"}
	rec.run(func() { New(rec, "python-sandbox-template") })
	assert.Check(t, rec.failed && !rec.skipped, rec.output())

	t.Setenv("CI", "")
	t.Setenv("SANDBOXTEST_REQUIRE", "1")
	rec = &recorder{name: "TestX"}
	rec.run(func() { New(rec, "python-sandbox-template") })
	assert.Check(t, rec.failed && !rec.skipped, rec.output())
	assert.Check(t, is.Contains(rec.output(), "no reachable cluster"))
}

func TestBadSettings(t *testing.T) {
	t.Setenv("SANDBOXTEST_READY_TIMEOUT", "soon")
	_, err := newSettings(nil)
	assert.Check(t, is.ErrorContains(err, `SANDBOXTEST_READY_TIMEOUT="soon" is not a duration`))
	t.Setenv("SANDBOXTEST_READY_TIMEOUT", "")
	_, err = newSettings([]Option{WithKeep("sometimes")})
	assert.Check(t, is.ErrorContains(err, `keep policy "sometimes"`))
}
