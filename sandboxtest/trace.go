package sandboxtest

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentsandbox/go-sandboxtest/internal/report"
	"github.com/agentsandbox/go-sandboxtest/internal/summary"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// testRecord is what sandboxtest knows of one test that used a sandbox:
// its span (sandboxtest.test) and its sandboxes, for the summary. It ends
// in the test's cleanup, after the sandboxes' (cleanups run last-in first-out).
type testRecord struct {
	t       TB
	name    string
	started time.Time
	ctx     context.Context // carries the test's span; never cancelled
	span    trace.Span

	mu        sync.Mutex
	sandboxes []*summary.Entry
}

var liveTests = struct {
	sync.Mutex
	byTB   map[TB]*testRecord
	byName map[string]*testRecord
}{byTB: map[TB]*testRecord{}, byName: map[string]*testRecord{}}

// testFor returns t's record, starting its span (as a child of its parent
// test's span, when the parent has one) and registering its end on first use.
func testFor(t TB) *testRecord {
	if c, ok := t.(*collectingTB); ok { // a detached sandbox: provisioned for c's test
		t = c.TB
	}
	liveTests.Lock()
	if r, ok := liveTests.byTB[t]; ok {
		liveTests.Unlock()
		return r
	}
	name := t.Name()
	parent := context.Background()
	if i := strings.LastIndex(name, "/"); i > 0 {
		if p := liveTests.byName[name[:i]]; p != nil {
			parent = p.ctx
		}
	}
	ctx, span := tracing.Tracer().Start(parent, tracing.SpanTest, trace.WithAttributes(tracing.AttrTestName.String(name)))
	r := &testRecord{t: t, name: name, started: time.Now(), ctx: ctx, span: span}
	liveTests.byTB[t] = r
	liveTests.byName[name] = r
	liveTests.Unlock()
	t.Cleanup(r.end)
	return r
}

// end closes the test's span with its result and files its summary.
func (r *testRecord) end() {
	result := testResult(r.t)
	r.span.SetAttributes(tracing.AttrTestResult.String(result))
	if result == "fail" {
		r.span.SetStatus(codes.Error, "test failed")
	}
	r.span.End()
	liveTests.Lock()
	delete(liveTests.byTB, r.t)
	if liveTests.byName[r.name] == r {
		delete(liveTests.byName, r.name)
	}
	liveTests.Unlock()
	addSummary(r, result)
}

func testResult(t TB) string {
	if t.Failed() {
		return "fail"
	}
	if s, ok := t.(interface{ Skipped() bool }); ok && s.Skipped() {
		return "skip"
	}
	return "pass"
}

// TestContext returns a context carrying t's span (sandboxtest.test), so a
// test's own spans and calls join the trace of its sandboxes. It is never
// cancelled. Without tracing (see sandboxtest.Main) the span records nothing.
func TestContext(t TB) context.Context { return testFor(t).ctx }

// startLifecycle starts the sandbox's lifecycle span under its test's.
func (sb *Sandbox) startLifecycle() {
	_, sb.span = tracing.Tracer().Start(sb.rec.ctx, tracing.SpanLifecycle, trace.WithAttributes(
		tracing.AttrTemplate.String(sb.template), tracing.AttrNamespace.String(sb.s.namespace)))
}

// startOp starts a child span of the sandbox's lifecycle; ctx keeps its
// deadline and values, only its span is replaced.
func (sb *Sandbox) startOp(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if sb.span != nil {
		ctx = trace.ContextWithSpan(ctx, sb.span)
	}
	return tracing.Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span, recording err as its status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// traceID is the sandbox's trace ID, or "" without tracing.
func (sb *Sandbox) traceID() string {
	if sb.span == nil || !sb.span.SpanContext().IsValid() {
		return ""
	}
	return sb.span.SpanContext().TraceID().String()
}

// commandAttrs are the attributes of a run span.
func commandAttrs(command string) []attribute.KeyValue {
	return []attribute.KeyValue{
		tracing.AttrCommand.String(tracing.Truncate(command, 256)),
		tracing.AttrCommandExecutable.String(tracing.CommandExecutable(command)),
	}
}

// traceOp starts the span of a file call and returns what ends it and
// records the call for the failure report (n: bytes, entries, or 1 when a
// path exists).
func (sb *Sandbox) traceOp(ctx context.Context, span, op, what string, attrs ...attribute.KeyValue) (context.Context, func(n int, err error, more ...attribute.KeyValue)) {
	ctx, s := sb.startOp(ctx, span, attrs...)
	start := time.Now()
	return ctx, func(n int, err error, more ...attribute.KeyValue) {
		s.SetAttributes(more...)
		endSpan(s, err)
		rec := report.Op{At: start, Op: op, What: what, Bytes: n, Duration: time.Since(start)}
		if err != nil {
			rec.Err = err.Error()
		}
		sb.record(rec)
	}
}
