// Package tracing sets up OpenTelemetry for sandboxtest and names what it
// traces.
//
// [Setup] builds a TracerProvider from the standard OpenTelemetry
// environment variables and installs it, with the W3C trace-context
// propagator, as the global provider:
//
//	OTEL_SERVICE_NAME                    service.name (default "sandboxtest")
//	OTEL_RESOURCE_ATTRIBUTES             more resource attributes
//	OTEL_TRACES_EXPORTER                 otlp (default) or none
//	OTEL_SDK_DISABLED                    true: Setup installs nothing
//	OTEL_EXPORTER_OTLP_TRACES_PROTOCOL   grpc, http/protobuf (default) or http/json;
//	OTEL_EXPORTER_OTLP_PROTOCOL          the same, for all signals
//	OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION,
//	_INSECURE, _CERTIFICATE …            read by the OTLP exporters themselves
//	OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_* read by the SDK
//
// The default protocol is http/protobuf, as the OpenTelemetry specification
// says (endpoint http://localhost:4318); set OTEL_EXPORTER_OTLP_PROTOCOL=grpc
// for a collector's gRPC port (localhost:4317).
//
// sandboxtest.Main calls Setup when SANDBOXTEST_TRACING=1 or
// -sandboxtest.trace is given. The spans it makes are named by the
// constants below: one [SpanTest] per test, and under it one
// [SpanLifecycle] per sandbox (the span name of the upstream agent-sandbox
// Go client) whose children are the operations [SpanCreateClaim] …
// [SpanDeleteClaim]. The claim carries the trace context in the
// [TraceContextAnnotation] annotation, as upstream clients write it, so
// the agent-sandbox controller's spans join the trace, and every request to
// the router carries a traceparent header.
package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "sandboxtest"

// Span names.
const (
	SpanTest      = "sandboxtest.test"         // one per test that used a sandbox
	SpanLifecycle = "sandbox-client.lifecycle" // one per sandbox, from New to its deletion

	// Operations, children of SpanLifecycle (upstream's "<service>.<op>" names).
	SpanConnect          = "sandbox-client.connect"
	SpanCreateClaim      = "sandbox-client.create_claim"
	SpanWaitReady        = "sandbox-client.wait_for_sandbox_ready"
	SpanRun              = "sandbox-client.run"
	SpanWrite            = "sandbox-client.write"
	SpanRead             = "sandbox-client.read"
	SpanList             = "sandbox-client.list"
	SpanExists           = "sandbox-client.exists"
	SpanDeleteClaim      = "sandbox-client.delete_claim"
	InstrumentationScope = "github.com/agentsandbox/go-sandboxtest/sandboxtest"
)

// TraceContextAnnotation is the claim annotation holding the W3C trace
// context as JSON ({"traceparent":"00-…"}), which the agent-sandbox
// controller copies to the Sandbox and pod and parents its spans to.
const TraceContextAnnotation = "opentelemetry.io/trace-context"

// Attribute keys. The sandbox.* keys are the upstream Go client's.
const (
	AttrTestName   attribute.Key = "sandboxtest.test.name"
	AttrTestResult attribute.Key = "sandboxtest.test.result" // pass, fail or skip

	AttrTemplate  attribute.Key = "sandbox.template.name"
	AttrPool      attribute.Key = "sandbox.warm_pool.name"
	AttrNamespace attribute.Key = "k8s.namespace.name"
	AttrClaimName attribute.Key = "sandbox.claim.name"
	AttrSandbox   attribute.Key = "sandbox.name"
	AttrPodName   attribute.Key = "k8s.pod.name"
	AttrPodIP     attribute.Key = "sandbox.pod.ip"
	AttrNodeName  attribute.Key = "k8s.node.name"
	AttrStart     attribute.Key = "sandbox.start" // warm or cold
	AttrMode      attribute.Key = "sandboxtest.connect.mode"
	AttrRoute     attribute.Key = "sandboxtest.connect.route" // where the bytes go
	AttrKept      attribute.Key = "sandboxtest.kept"

	AttrCommand           attribute.Key = "sandbox.command"
	AttrCommandExecutable attribute.Key = "sandbox.command.executable"
	AttrExitCode          attribute.Key = "sandbox.exit_code"
	AttrStdoutBytes       attribute.Key = "sandbox.stdout.bytes"
	AttrStderrBytes       attribute.Key = "sandbox.stderr.bytes"
	AttrFilePath          attribute.Key = "sandbox.file.path"
	AttrFileSize          attribute.Key = "sandbox.file.size"
	AttrFileCount         attribute.Key = "sandbox.file.count"
	AttrFileExists        attribute.Key = "sandbox.file.exists"
)

// Option configures Setup.
type Option func(*config)

type config struct {
	serviceName string
	exporter    sdktrace.SpanExporter
	syncExport  bool
	global      bool
	env         func(string) string
	res         []attribute.KeyValue
}

// WithServiceName sets service.name, over OTEL_SERVICE_NAME.
func WithServiceName(name string) Option { return func(c *config) { c.serviceName = name } }

// WithExporter exports to exp instead of the OTLP exporter the variables
// describe (tests pass an in-memory exporter).
func WithExporter(exp sdktrace.SpanExporter) Option { return func(c *config) { c.exporter = exp } }

// WithSyncExport exports each span as it ends instead of in batches; for
// tests, never for real runs.
func WithSyncExport() Option { return func(c *config) { c.syncExport = true } }

// WithoutGlobal leaves the global TracerProvider and propagator alone; the
// provider is then reachable only through [Provider]'s result.
func WithoutGlobal() Option { return func(c *config) { c.global = false } }

// WithResourceAttributes adds resource attributes.
func WithResourceAttributes(kv ...attribute.KeyValue) Option {
	return func(c *config) { c.res = append(c.res, kv...) }
}

// withEnv reads variables from env instead of the process environment
// (for Setup's own decisions; the OTLP exporters always read the process
// environment).
func withEnv(env func(string) string) Option { return func(c *config) { c.env = env } }

// Setup builds a TracerProvider from the environment (see the package
// documentation), installs it as the global provider with the W3C
// trace-context and baggage propagators, and returns shutdown, which
// flushes the spans still buffered and restores the previous global
// provider. With OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none it
// installs nothing and shutdown does nothing.
func Setup(ctx context.Context, opts ...Option) (shutdown func(context.Context) error, err error) {
	tp, err := Provider(ctx, opts...)
	if err != nil || tp == nil {
		return func(context.Context) error { return nil }, err
	}
	c := newConfig(opts)
	if !c.global {
		return tp.Shutdown, nil
	}
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return func(ctx context.Context) error {
		err := tp.Shutdown(ctx)
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		if err != nil {
			return fmt.Errorf("sandboxtest: tracing: flushing spans to %s: %w", describeEndpoint(c.env), err)
		}
		return nil
	}, nil
}

func newConfig(opts []Option) *config {
	c := &config{global: true, env: os.Getenv}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Provider builds the TracerProvider Setup would install, without
// installing it; nil (and no error) when the environment disables tracing.
// The caller shuts it down.
func Provider(ctx context.Context, opts ...Option) (*sdktrace.TracerProvider, error) {
	c := newConfig(opts)
	if strings.EqualFold(strings.TrimSpace(c.env("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	exp := c.exporter
	if exp == nil {
		var err error
		if exp, err = otlpExporter(ctx, c.env); err != nil || exp == nil {
			return nil, err
		}
	}
	name := c.serviceName
	if name == "" {
		name = strings.TrimSpace(c.env("OTEL_SERVICE_NAME"))
	}
	if name == "" {
		name = DefaultServiceName
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithProcessPID(), resource.WithHost(),
		resource.WithAttributes(append([]attribute.KeyValue{attribute.String("service.name", name)}, c.res...)...),
	)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("sandboxtest: tracing: resource: %w", err)
	}
	proc := sdktrace.WithBatcher(exp)
	if c.syncExport {
		proc = sdktrace.WithSyncer(exp)
	}
	return sdktrace.NewTracerProvider(proc, sdktrace.WithResource(res)), nil
}

// Protocol is the OTLP protocol the environment asks for traces:
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
// else http/protobuf.
func Protocol(env func(string) string) string {
	if env == nil {
		env = os.Getenv
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.ToLower(strings.TrimSpace(env(k))); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

func otlpExporter(ctx context.Context, env func(string) string) (sdktrace.SpanExporter, error) {
	switch e := strings.ToLower(strings.TrimSpace(env("OTEL_TRACES_EXPORTER"))); e {
	case "", "otlp":
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("sandboxtest: tracing: OTEL_TRACES_EXPORTER=%q is not supported; use otlp (or none)", e)
	}
	switch p := Protocol(env); p {
	case "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("sandboxtest: tracing: OTLP/gRPC exporter: %w", err)
		}
		return exp, nil
	case "http/protobuf", "http/json":
		exp, err := otlptracehttp.New(ctx) // reads the protocol itself for the encoding
		if err != nil {
			return nil, fmt.Errorf("sandboxtest: tracing: OTLP/HTTP exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("sandboxtest: tracing: OTLP protocol %q (from OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL) is not one of grpc, http/protobuf, http/json", p)
	}
}

func describeEndpoint(env func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := strings.TrimSpace(env(k)); v != "" {
			return fmt.Sprintf("%s (%s=%s)", Protocol(env), k, v)
		}
	}
	if Protocol(env) == "grpc" {
		return "grpc localhost:4317 (the default; set OTEL_EXPORTER_OTLP_ENDPOINT)"
	}
	return Protocol(env) + " http://localhost:4318 (the default; set OTEL_EXPORTER_OTLP_ENDPOINT)"
}

// Tracer is sandboxtest's tracer from the global provider.
func Tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(InstrumentationScope) }

// TraceContextJSON is the W3C trace context of ctx's span as the JSON map
// upstream clients put in [TraceContextAnnotation]
// ({"traceparent":"00-<trace>-<span>-<flags>"}); "" when ctx has no valid
// span. It injects with the W3C propagator whatever the global one is.
func TraceContextJSON(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return ""
	}
	data, _ := json.Marshal(map[string]string(carrier))
	return string(data)
}

// ContextFromJSON is the inverse of TraceContextJSON: a context whose
// remote span context is the one in s.
func ContextFromJSON(ctx context.Context, s string) (context.Context, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return ctx, fmt.Errorf("trace context %q is not a JSON object: %w", s, err)
	}
	out := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(m))
	if !trace.SpanContextFromContext(out).IsValid() {
		return ctx, errors.New("trace context " + s + " holds no valid traceparent")
	}
	return out, nil
}

// CommandExecutable is the program a command line runs, without leading
// VAR=value assignments and directories (upstream's attribute value).
func CommandExecutable(command string) string {
	for _, f := range strings.Fields(command) {
		if strings.Contains(f, "=") {
			continue
		}
		f = strings.Trim(f, `'"`)
		if i := strings.LastIndex(f, "/"); i >= 0 {
			f = f[i+1:]
		}
		return f
	}
	return ""
}

// Truncate bounds an attribute value to n bytes (on a rune boundary), marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
