package sandboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/agentsandbox/go-sandboxtest/internal/summary"
	"github.com/agentsandbox/go-sandboxtest/tracing"
)

func summaryOf(t *testing.T, name string) summary.Test {
	t.Helper()
	for _, s := range runSummary.Tests() {
		if s.Test == name {
			return s
		}
	}
	t.Fatalf("no summary for %s", name)
	return summary.Test{}
}

func TestSummaryOfATest(t *testing.T) {
	rec := &recorder{name: "TestSummarized"}
	rec.run(func() {
		sb := New(rec, "python-sandbox-template")
		sb.RunOK("true")
		sb.Run("sh -c 'exit 3'")
		sb.WriteFile("f", []byte("x")) // not a command
	})
	finish(rec)
	assert.Assert(t, !rec.failed, rec.output())
	s := summaryOf(t, "TestSummarized")
	assert.Check(t, is.Equal(s.Result, "pass"))
	assert.Check(t, is.Equal(s.RunID, RunID()))
	assert.Check(t, is.Equal(s.Package, "github.com/agentsandbox/go-sandboxtest/sandboxtest"))
	assert.Check(t, is.Equal(s.Commands, 2))
	assert.Assert(t, is.Len(s.Sandboxes, 1))
	sb := s.Sandboxes[0]
	assert.Check(t, is.Equal(sb.Template, "python-sandbox-template"))
	assert.Check(t, is.Equal(sb.Pool, "python-sandbox-template"))
	assert.Check(t, is.Equal(sb.Mode, "tunnel"))
	assert.Check(t, is.Equal(sb.Start, "cold"))
	assert.Check(t, !sb.Warm)
	assert.Check(t, sb.TimeToReadyMS > 0)
	assert.Check(t, is.Equal(sb.Commands, 2))
	assert.Check(t, sb.CommandTimeMS > 0 && sb.CommandTimeMS == s.CommandTimeMS)
	assert.Check(t, strings.HasPrefix(sb.Claim, "sandboxtest-"))

	// New's failure is in the summary too.
	rec = &recorder{name: "TestSummarizedFailure"}
	rec.run(func() { _, _ = NewE(context.Background(), rec, "no-such-template") })
	finish(rec)
	f := summaryOf(t, "TestSummarizedFailure")
	assert.Assert(t, is.Len(f.Sandboxes, 1))
	assert.Check(t, is.Contains(f.Sandboxes[0].Error, `template "no-such-template" not found`))
}

// mainChildEnv marks the test binary run by TestMainSummaryAndTracing.
const mainChildEnv = "SANDBOXTEST_TEST_MAIN_CHILD"

// TestMainChild is the suite TestMainSummaryAndTracing runs in a child test binary.
func TestMainChild(t *testing.T) {
	if os.Getenv(mainChildEnv) == "" {
		t.Skip("run by TestMainSummaryAndTracing")
	}
	sb := New(t, "python-sandbox-template")
	sb.RunOK("echo one")
	sb.RunOK("echo two")
}

// TestMainSummaryAndTracing runs a suite in a child test binary through
// Main, with -sandboxtest.trace, -sandboxtest.quiet and SANDBOXTEST_SUMMARY,
// on this binary's cluster: Main exports the spans with the real OTLP/HTTP
// exporter to a receiver here, writes the summary, and logs no routine line.
func TestMainSummaryAndTracing(t *testing.T) {
	if os.Getenv(mainChildEnv) != "" {
		t.Skip("in the child")
	}
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("needs the KUBECONFIG Main set up")
	}
	var mu sync.Mutex
	var spans []*tracepb.Span
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer srv.Close()

	summaryPath := filepath.Join(t.TempDir(), "summary.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMainChild$", "-test.v", "-sandboxtest.trace", "-sandboxtest.quiet")
	cmd.Env = append(os.Environ(), mainChildEnv+"=1", "KUBECONFIG="+kubeconfig, "SANDBOXTEST_LOCAL=0",
		"SANDBOXTEST_SUMMARY="+summaryPath, "OTEL_EXPORTER_OTLP_ENDPOINT="+srv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=", "OTEL_TRACES_EXPORTER=", "OTEL_SDK_DISABLED=",
		"SANDBOXTEST_TRACING=", "SANDBOXTEST_QUIET=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	assert.NilError(t, err, out.String())
	assert.Check(t, is.Contains(out.String(), "--- PASS: TestMainChild"))
	for _, routine := range []string{"ready in", "deleted claim", "connected to the router", "summary of"} {
		assert.Check(t, !strings.Contains(out.String(), routine), "quiet, yet %q in:\n%s", routine, out.String())
	}

	var sum summary.File
	data, err := os.ReadFile(summaryPath)
	assert.NilError(t, err)
	assert.NilError(t, json.Unmarshal(data, &sum))
	assert.Assert(t, is.Len(sum.Tests, 1), string(data))
	st := sum.Tests[0]
	assert.Check(t, is.Equal(st.Test, "TestMainChild"))
	assert.Check(t, is.Equal(st.Result, "pass"))
	assert.Check(t, is.Equal(st.Commands, 2))
	assert.Assert(t, is.Len(st.Sandboxes, 1))
	assert.Check(t, is.Equal(st.Sandboxes[0].Template, "python-sandbox-template"))
	assert.Check(t, is.Equal(st.Sandboxes[0].Mode, "tunnel"))
	for _, key := range []string{`"time_to_ready_ms"`, `"warm": false`, `"start": "cold"`, `"command_time_ms"`, `"run_id"`} {
		assert.Check(t, is.Contains(string(data), key))
	}

	mu.Lock()
	defer mu.Unlock()
	byName := map[string][]*tracepb.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	assert.Assert(t, is.Len(byName[tracing.SpanTest], 1), "spans: %v", byName)
	assert.Assert(t, is.Len(byName[tracing.SpanLifecycle], 1))
	assert.Assert(t, is.Len(byName[tracing.SpanRun], 2))
	test, life := byName[tracing.SpanTest][0], byName[tracing.SpanLifecycle][0]
	assert.Check(t, bytes.Equal(life.ParentSpanId, test.SpanId))
	for _, name := range []string{tracing.SpanCreateClaim, tracing.SpanWaitReady, tracing.SpanRun, tracing.SpanDeleteClaim} {
		for _, s := range byName[name] {
			assert.Check(t, bytes.Equal(s.ParentSpanId, life.SpanId), name)
			assert.Check(t, bytes.Equal(s.TraceId, test.TraceId), name)
		}
	}
}
