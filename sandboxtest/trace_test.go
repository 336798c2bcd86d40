package sandboxtest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentsandbox/go-sandboxtest/tracing"
)

// inMemoryTracing makes the global provider export to memory until the test ends.
func inMemoryTracing(t *testing.T) *tracetest.InMemoryExporter {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})
	return exp
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestSpanTree runs a real sandbox under an in-memory exporter and checks
// the tree: the test's span, the lifecycle under it, the operations under
// that, and the claim's trace-context annotation.
func TestSpanTree(t *testing.T) {
	exp := inMemoryTracing(t)
	var claim, sandbox, pod, annotation string
	t.Run("traced", func(t *testing.T) {
		sb := New(t, "python-sandbox-template")
		sb.RunOK("echo hi")
		sb.WriteFile("d/f.txt", []byte("12345"))
		assert.Check(t, is.Equal(string(sb.ReadFile("d/f.txt")), "12345"))
		assert.Check(t, is.Len(sb.ListDir("d"), 1))
		assert.Check(t, sb.Exists("d/f.txt"))
		claim, sandbox, pod = sb.ClaimName(), sb.SandboxName(), sb.PodName()
		cl, err := sb.c.clients.Extensions.ExtensionsV1beta1().SandboxClaims(sb.Namespace()).Get(context.Background(), claim, metav1.GetOptions{})
		assert.NilError(t, err)
		annotation = cl.Annotations[tracing.TraceContextAnnotation]
	})

	spans := exp.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	one := func(name string) tracetest.SpanStub {
		t.Helper()
		assert.Assert(t, is.Len(byName[name], 1), "spans named %s", name)
		return byName[name][0]
	}
	test, life := one(tracing.SpanTest), one(tracing.SpanLifecycle)
	assert.Check(t, !test.Parent.IsValid(), "the test span is a root")
	assert.Check(t, is.Equal(attrs(test)[tracing.AttrTestName].AsString(), "TestSpanTree/traced"))
	assert.Check(t, is.Equal(attrs(test)[tracing.AttrTestResult].AsString(), "pass"))
	assert.Check(t, life.Parent.SpanID() == test.SpanContext.SpanID(), "lifecycle under the test")
	la := attrs(life)
	for k, want := range map[attribute.Key]string{
		tracing.AttrTemplate: "python-sandbox-template", tracing.AttrNamespace: "default", tracing.AttrClaimName: claim,
		tracing.AttrSandbox: sandbox, tracing.AttrPodName: pod, tracing.AttrMode: "tunnel", tracing.AttrStart: "cold",
	} {
		assert.Check(t, is.Equal(la[k].AsString(), want), string(k))
	}

	ops := []string{tracing.SpanConnect, tracing.SpanCreateClaim, tracing.SpanWaitReady, tracing.SpanRun,
		tracing.SpanWrite, tracing.SpanRead, tracing.SpanList, tracing.SpanExists, tracing.SpanDeleteClaim}
	for _, name := range ops {
		s := one(name)
		assert.Check(t, s.Parent.SpanID() == life.SpanContext.SpanID(), "%s is not a child of the lifecycle", name)
		assert.Check(t, s.SpanContext.TraceID() == test.SpanContext.TraceID(), "%s in another trace", name)
		assert.Check(t, !s.EndTime.Before(s.StartTime))
	}
	assert.Check(t, !life.EndTime.Before(one(tracing.SpanDeleteClaim).EndTime), "the lifecycle ends after the claim's deletion")
	assert.Check(t, !test.EndTime.Before(life.EndTime), "the test ends after its sandbox")

	run := attrs(one(tracing.SpanRun))
	assert.Check(t, is.Equal(run[tracing.AttrCommand].AsString(), "echo hi"))
	assert.Check(t, is.Equal(run[tracing.AttrCommandExecutable].AsString(), "echo"))
	assert.Check(t, is.Equal(run[tracing.AttrExitCode].AsInt64(), int64(0)))
	assert.Check(t, is.Equal(run[tracing.AttrStdoutBytes].AsInt64(), int64(3)))
	w := attrs(one(tracing.SpanWrite))
	assert.Check(t, is.Equal(w[tracing.AttrFilePath].AsString(), "d/f.txt"))
	assert.Check(t, is.Equal(w[tracing.AttrFileSize].AsInt64(), int64(5)))
	assert.Check(t, is.Equal(attrs(one(tracing.SpanRead))[tracing.AttrFileSize].AsInt64(), int64(5)))
	assert.Check(t, is.Equal(attrs(one(tracing.SpanList))[tracing.AttrFileCount].AsInt64(), int64(1)))
	assert.Check(t, attrs(one(tracing.SpanExists))[tracing.AttrFileExists].AsBool())
	assert.Check(t, is.Equal(attrs(one(tracing.SpanCreateClaim))[tracing.AttrClaimName].AsString(), claim))
	assert.Check(t, is.Equal(attrs(one(tracing.SpanConnect))[tracing.AttrMode].AsString(), "tunnel"))

	// The claim's annotation is the create_claim span's context, as upstream writes it.
	cc := one(tracing.SpanCreateClaim).SpanContext
	want := `{"traceparent":"00-` + cc.TraceID().String() + "-" + cc.SpanID().String() + `-01"}`
	assert.Check(t, is.Equal(annotation, want))
	ctx, err := tracing.ContextFromJSON(context.Background(), annotation)
	assert.NilError(t, err)
	assert.Check(t, trace.SpanContextFromContext(ctx).TraceID() == test.SpanContext.TraceID())
}

// TestFailedTestSpan: a failed test's span and lifecycle say so, and
// TestContext parents a test's own spans to its test span.
func TestFailedTestSpan(t *testing.T) {
	exp := inMemoryTracing(t)
	t.Setenv(reportDisabledEnv, "0") // the report is tested elsewhere
	rec := &recorder{name: "TestFails"}
	rec.run(func() {
		New(rec, "python-sandbox-template")
		_, own := tracing.Tracer().Start(TestContext(rec), "my-step")
		own.End()
		rec.Errorf("deliberate")
	})
	finish(rec)
	var test, life, own tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case tracing.SpanTest:
			test = s
		case tracing.SpanLifecycle:
			life = s
		case "my-step":
			own = s
		}
	}
	assert.Check(t, is.Equal(attrs(test)[tracing.AttrTestResult].AsString(), "fail"))
	assert.Check(t, is.Equal(test.Status.Description, "test failed"))
	assert.Check(t, is.Equal(life.Status.Description, "the test failed"))
	assert.Check(t, own.Parent.SpanID() == test.SpanContext.SpanID())
}

// TestSubtestSpanUnderParent: a subtest's span is a child of its parent
// test's, when the parent used a sandbox first.
func TestSubtestSpanUnderParent(t *testing.T) {
	exp := inMemoryTracing(t)
	parent := TestContext(t)
	t.Run("child", func(t *testing.T) { TestContext(t) })
	var child tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if attrs(s)[tracing.AttrTestName].AsString() == "TestSubtestSpanUnderParent/child" {
			child = s
		}
	}
	assert.Check(t, child.Parent.SpanID() == trace.SpanContextFromContext(parent).SpanID())
}
