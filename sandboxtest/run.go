package sandboxtest

import (
	"context"
	"time"

	"github.com/agentsandbox/go-sandboxtest/internal/report"
	"github.com/agentsandbox/go-sandboxtest/internal/runtime"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// CallOption tunes one call to the sandbox.
type CallOption = runtime.CallOption

// WithCallTimeout bounds one call (on top of its context).
func WithCallTimeout(d time.Duration) CallOption { return runtime.WithTimeout(d) }

// WithRetries retries a call on 502/503/504 and transport errors, up to n
// attempts in all. Run is not retried unless asked: a command may not be idempotent.
func WithRetries(n int) CallOption { return runtime.WithRetries(n) }

// historySize is how many recent commands a sandbox remembers for its failure report.
const historySize = 10

// Run runs command in the sandbox (split shell-style, no shell: use
// `sh -c '...'` for pipes). A non-zero exit is a Result, not a failure;
// Run fails the test only when the command could not be run at all.
func (sb *Sandbox) Run(command string) *Result {
	sb.t.Helper()
	r, err := sb.RunE(context.Background(), command)
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
	out, err := sb.c.runtime.Execute(ctx, sb.target(), command, opts...)
	r := &Result{Cmd: command, Stdout: out.Stdout, Stderr: out.Stderr, ExitCode: out.ExitCode,
		Duration: time.Since(start), Sandbox: sb.s.namespace + "/" + sb.claim}
	op := report.Op{At: start, Op: "run", What: command, ExitCode: r.ExitCode, Duration: r.Duration}
	if err != nil {
		err = errorf("running %q in %s: %w", command, sb, err)
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
