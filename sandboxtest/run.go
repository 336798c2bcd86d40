package sandboxtest

import (
	"context"
	"strings"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/report"
	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// CallOption tunes one call to the sandbox (RunE, RunArgsE, WriteFileE,
// ReadFileE, ListDirE, ExistsE).
type CallOption func(*callSettings)

type callSettings struct {
	timeout    time.Duration
	timeoutSet bool
	retries    []runtime.CallOption
}

// WithCallTimeout bounds one call, retries included, instead of the default
// call timeout ($SANDBOXTEST_CALL_TIMEOUT, else 5m); d <= 0 removes the
// bound (the context's own deadline remains). When it runs out, the call's
// error names the limit and matches context.DeadlineExceeded.
func WithCallTimeout(d time.Duration) CallOption {
	return func(c *callSettings) { c.timeout, c.timeoutSet = d, true }
}

// WithRetries retries a call on 502/503/504 and transport errors, up to n
// attempts in all. Run is not retried unless asked: a command may not be
// idempotent. Any call, Run included, is still sent again, once the router
// answers and within the call timeout, when it never reached a runtime
// (the tunnel re-establishing after a router restart, a refused
// connection, a 503).
func WithRetries(n int) CallOption {
	return func(c *callSettings) { c.retries = []runtime.CallOption{runtime.WithRetries(max(n-1, 0))} }
}

// call prepares one call: its context, bounded by the call timeout, and
// the options for the runtime client. A call after Delete is ErrDeleted.
func (sb *Sandbox) call(ctx context.Context, opts []CallOption) (context.Context, context.CancelFunc, []runtime.CallOption, error) {
	if sb.deleted.Load() {
		return ctx, func() {}, nil, ErrDeleted
	}
	c := callSettings{timeout: sb.s.callTimeout}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.timeout <= 0 {
		return ctx, func() {}, c.retries, nil
	}
	source := "WithCallTimeout"
	if !c.timeoutSet {
		source = sb.s.callTimeoutSource
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, &callTimeout{d: c.timeout, source: source})
	return ctx, cancel, c.retries, nil
}

// testContext is the context of a call without one (Run, WriteFile, ...):
// the test's (t.Context, Go 1.24+), so that a call in flight when the test
// ends is stopped. In a t.Cleanup function that context is already done; a
// call from there gets a context of its own, bounded by the call timeout.
func (sb *Sandbox) testContext() context.Context { return testContext(sb.t) }

// historySize is how many recent commands a sandbox remembers for its failure report.
const historySize = 10

// Run runs command in the sandbox (split shell-style, no shell: use
// `sh -c '...'` for pipes). A non-zero exit is a Result, not a failure;
// Run fails the test only when the command could not be run at all.
func (sb *Sandbox) Run(command string) *Result {
	sb.t.Helper()
	r, err := sb.RunE(sb.testContext(), command)
	if err != nil {
		sb.t.Fatalf("%v", err)
	}
	return r
}

// RunOK is Run that also requires exit code 0.
func (sb *Sandbox) RunOK(command string) *Result {
	sb.t.Helper()
	r := sb.Run(command)
	r.Assert(sb.t, Expected{})
	return r
}

// RunE runs command and returns an error only for transport or harness failures.
func (sb *Sandbox) RunE(ctx context.Context, command string, opts ...CallOption) (*Result, error) {
	ctx, span := sb.startOp(ctx, tracing.SpanRun, commandAttrs(command)...)
	start := time.Now()
	ctx, cancel, ropts, err := sb.call(ctx, opts)
	defer cancel()
	var out runtime.ExecResult
	if err == nil {
		out, err = sb.c.runtime.Execute(ctx, sb.target(), command, ropts...)
	}
	r := &Result{Cmd: command, Stdout: out.Stdout, Stderr: out.Stderr, ExitCode: out.ExitCode,
		Duration: time.Since(start), Sandbox: sb.s.namespace + "/" + sb.claim}
	op := report.Op{At: start, Op: "run", What: command, ExitCode: r.ExitCode, Duration: r.Duration}
	if err != nil {
		err = errorf("running %q in %s: %w", command, sb, callError(err))
		op.Err = err.Error()
		sb.record(op)
		endSpan(span, err)
		return nil, err
	}
	span.SetAttributes(tracing.AttrExitCode.Int(r.ExitCode),
		tracing.AttrStdoutBytes.Int(len(r.Stdout)), tracing.AttrStderrBytes.Int(len(r.Stderr)))
	span.End()
	sb.remember(*r)
	sb.record(op)
	return r, nil
}

// RunArgs runs argv in the sandbox, each element one argument exactly as
// given: it is quoted for the runtime, which splits the command line like
// a POSIX shell (Python's shlex) and runs it without one. Otherwise as Run.
func (sb *Sandbox) RunArgs(argv ...string) *Result {
	sb.t.Helper()
	r, err := sb.RunArgsE(sb.testContext(), argv)
	if err != nil {
		sb.t.Fatalf("%v", err)
	}
	return r
}

// RunArgsE is RunArgs returning an error, as RunE.
func (sb *Sandbox) RunArgsE(ctx context.Context, argv []string, opts ...CallOption) (*Result, error) {
	if len(argv) == 0 {
		return nil, errorf("RunArgs in %s: no command (argv is empty)", sb)
	}
	return sb.RunE(ctx, quoteArgs(argv), opts...)
}

// quoteArgs joins argv into one command line that the runtime (Python's
// shlex.split) splits back into argv. An argument of only letters, digits
// and @%+=:,./_- stays as it is; any other is put in single quotes, a
// single quote in it written '"'"'.
func quoteArgs(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quoteArg(a)
	}
	return strings.Join(q, " ")
}

func quoteArg(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("@%+=:,./_-", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func (sb *Sandbox) remember(r Result) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.history = append(sb.history, r)
	if len(sb.history) > historySize {
		sb.history = sb.history[len(sb.history)-historySize:]
	}
}

// History returns the last commands run in the sandbox, oldest first.
func (sb *Sandbox) History() []Result {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return append([]Result(nil), sb.history...)
}
