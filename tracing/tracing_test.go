package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

// receiver collects the spans of OTLP export requests, with their service name.
type receiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
	got      chan struct{}
}

func newReceiver() *receiver { return &receiver{got: make(chan struct{}, 100)} }

func (r *receiver) add(req *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				r.services = append(r.services, kv.Value.GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	r.got <- struct{}{}
}

func (r *receiver) byName() map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		m[s.Name] = s
	}
	return m
}

// grpcReceiver is the collector's TraceService.
type grpcReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	r *receiver
}

func (g *grpcReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.r.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// httpReceiver serves POST /v1/traces with an OTLP protobuf body.
func httpReceiver(t *testing.T, r *receiver) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.Error(w, "want POST /v1/traces", http.StatusNotFound)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			t.Errorf("Content-Type = %q, want application/x-protobuf", ct)
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(&msg)
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// emit makes a parent span with a child and a grandchild through the global
// provider, as sandboxtest does, and returns their span contexts.
func emit() (parent, child, grandchild trace.SpanContext) {
	ctx, p := Tracer().Start(context.Background(), SpanTest)
	cctx, c := Tracer().Start(ctx, SpanLifecycle)
	_, g := Tracer().Start(cctx, SpanRun, trace.WithAttributes(AttrCommand.String("echo hi"), AttrExitCode.Int(0)))
	g.End()
	c.End()
	p.End()
	return p.SpanContext(), c.SpanContext(), g.SpanContext()
}

func checkTree(t *testing.T, r *receiver, parent, child, grandchild trace.SpanContext, service string) {
	t.Helper()
	spans := r.byName()
	assert.Assert(t, is.Len(spans, 3), "spans received: %v", spans)
	p, c, g := spans[SpanTest], spans[SpanLifecycle], spans[SpanRun]
	assert.Assert(t, p != nil && c != nil && g != nil)
	tid := parent.TraceID()
	for _, s := range []*tracepb.Span{p, c, g} {
		assert.Check(t, bytes.Equal(s.TraceId, tid[:]), "span %s in trace %x, want %s", s.Name, s.TraceId, tid)
	}
	pid, cid, gid := parent.SpanID(), child.SpanID(), grandchild.SpanID()
	assert.Check(t, bytes.Equal(p.SpanId, pid[:]))
	assert.Check(t, is.Len(p.ParentSpanId, 0), "the test span is a root")
	assert.Check(t, bytes.Equal(c.ParentSpanId, p.SpanId), "lifecycle's parent %s, want %s", hex.EncodeToString(c.ParentSpanId), pid)
	assert.Check(t, bytes.Equal(c.SpanId, cid[:]))
	assert.Check(t, bytes.Equal(g.ParentSpanId, c.SpanId), "run's parent %s, want %s", hex.EncodeToString(g.ParentSpanId), cid)
	assert.Check(t, bytes.Equal(g.SpanId, gid[:]))
	var attrs []string
	for _, kv := range g.Attributes {
		attrs = append(attrs, kv.Key)
	}
	assert.Check(t, is.Contains(attrs, string(AttrCommand)))
	assert.Check(t, is.Contains(attrs, string(AttrExitCode)))
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Check(t, is.Contains(r.services, service))
}

func clearOTELEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_INSECURE",
		"OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, "")
	}
}

func TestOTLPHTTPExporterDeliversTheTree(t *testing.T) {
	clearOTELEnv(t)
	r := newReceiver()
	srv := httpReceiver(t, r)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL) // http://127.0.0.1:port: the exporter adds /v1/traces
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shutdown, err := Setup(ctx)
	assert.NilError(t, err)
	p, c, g := emit()
	assert.Check(t, p.IsValid() && p.IsSampled())
	assert.NilError(t, shutdown(ctx))
	checkTree(t, r, p, c, g, DefaultServiceName)
	_, isSDK := otel.GetTracerProvider().(interface{ ForceFlush(context.Context) error })
	assert.Check(t, !isSDK, "shutdown restores the previous global provider")
}

func TestOTLPGRPCExporterDeliversTheTree(t *testing.T) {
	clearOTELEnv(t)
	r := newReceiver()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	assert.NilError(t, err)
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, &grpcReceiver{r: r})
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String()) // http: no TLS
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SERVICE_NAME", "my-suite")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shutdown, err := Setup(ctx)
	assert.NilError(t, err)
	p, c, g := emit()
	assert.NilError(t, shutdown(ctx))
	checkTree(t, r, p, c, g, "my-suite")
}

func TestTracesProtocolWinsOverTheGeneralOne(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
	assert.Check(t, is.Equal(Protocol(func(k string) string { return env[k] }), "http/protobuf"))
	assert.Check(t, is.Equal(Protocol(func(string) string { return "" }), "http/protobuf"))
	env = map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": " GRPC "}
	assert.Check(t, is.Equal(Protocol(func(k string) string { return env[k] }), "grpc"))
}

func TestSetupRefusesWhatItCannotDo(t *testing.T) {
	clearOTELEnv(t)
	ctx := context.Background()
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	_, err := Setup(ctx)
	assert.Check(t, is.ErrorContains(err, `OTLP protocol "carrier-pigeon"`))
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	_, err = Setup(ctx)
	assert.Check(t, is.ErrorContains(err, `OTEL_TRACES_EXPORTER="zipkin" is not supported`))
}

func TestDisabledInstallsNothing(t *testing.T) {
	clearOTELEnv(t)
	before := otel.GetTracerProvider()
	for _, kv := range [][2]string{{"OTEL_SDK_DISABLED", "true"}, {"OTEL_TRACES_EXPORTER", "none"}} {
		t.Setenv(kv[0], kv[1])
		shutdown, err := Setup(context.Background())
		assert.NilError(t, err)
		assert.Check(t, otel.GetTracerProvider() == before, kv[0])
		assert.NilError(t, shutdown(context.Background()))
		t.Setenv(kv[0], "")
	}
}

func TestInMemoryExporterAndEnvServiceName(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	env := map[string]string{"OTEL_SERVICE_NAME": "from-env"}
	shutdown, err := Setup(context.Background(), WithExporter(exp), WithSyncExport(), withEnv(func(k string) string { return env[k] }))
	assert.NilError(t, err)
	emit()
	spans := exp.GetSpans() // before shutdown, which empties the exporter
	assert.NilError(t, shutdown(context.Background()))
	assert.Assert(t, is.Len(spans, 3))
	v, ok := spans[0].Resource.Set().Value("service.name")
	assert.Check(t, ok && v.AsString() == "from-env", v.AsString())
}

func TestTraceContextJSON(t *testing.T) {
	assert.Check(t, is.Equal(TraceContextJSON(context.Background()), ""), "no span, no annotation")
	tid, _ := trace.TraceIDFromHex("0123456789abcdef0123456789abcdef")
	sid, _ := trace.SpanIDFromHex("0123456789abcdef")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	got := TraceContextJSON(ctx)
	assert.Check(t, is.Equal(got, `{"traceparent":"00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"}`))
	back, err := ContextFromJSON(context.Background(), got)
	assert.NilError(t, err)
	assert.Check(t, trace.SpanContextFromContext(back).TraceID() == tid)
	_, err = ContextFromJSON(context.Background(), `{"x":"y"}`)
	assert.Check(t, is.ErrorContains(err, "no valid traceparent"))
}

func TestCommandExecutableAndTruncate(t *testing.T) {
	for in, want := range map[string]string{
		"python3 -c 'x'":          "python3",
		"FOO=1 BAR=2 /usr/bin/ls": "ls",
		"":                        "",
		"'/bin/sh' -c true":       "sh",
	} {
		assert.Check(t, is.Equal(CommandExecutable(in), want), in)
	}
	assert.Check(t, is.Equal(Truncate("abc", 5), "abc"))
	assert.Check(t, is.Equal(Truncate("abcdef", 3), "abc…"))
	assert.Check(t, is.Equal(Truncate("aéb", 2), "a…"), "never cuts a rune")
}
