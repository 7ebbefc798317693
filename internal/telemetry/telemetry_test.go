package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// clearOTEL empties every variable Setup reads, so the machine's own
// environment cannot change the outcome.
func clearOTEL(t *testing.T) {
	for _, v := range []string{
		"OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
	} {
		t.Setenv(v, "")
	}
}

// keepGlobals restores the global provider and propagator after the test.
func keepGlobals(t *testing.T) {
	tp, prop, eh := otel.GetTracerProvider(), otel.GetTextMapPropagator(), otel.GetErrorHandler()
	t.Cleanup(func() {
		// Setting a global to the value it has makes otel complain.
		if otel.GetTracerProvider() != tp {
			otel.SetTracerProvider(tp)
		}
		if otel.GetTextMapPropagator() != prop {
			otel.SetTextMapPropagator(prop)
		}
		if otel.GetErrorHandler() != eh {
			otel.SetErrorHandler(eh)
		}
	})
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestSetupOff(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no endpoint":  {},
		"sdk disabled": {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			keepGlobals(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			before, beforeProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			tr, err := Setup(context.Background(), discard)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Enabled() || tr.TracerProvider() != nil {
				t.Fatal("tracing is on without an endpoint")
			}
			if otel.GetTracerProvider() != before || otel.GetTextMapPropagator() != beforeProp {
				t.Fatal("Setup replaced a global with tracing off")
			}
			if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
				t.Fatal("the global provider is an SDK one")
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSetupOn(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"grpc":                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		"traces endpoint":     {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1"},
		"http/protobuf":       {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
		"traces protocol":     {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
		"sampler ratio 1 pct": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			keepGlobals(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			var logs bytes.Buffer
			tr, err := Setup(context.Background(), slog.New(slog.NewJSONHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Enabled() || tr.TracerProvider() == nil {
				t.Fatal("tracing is off with an endpoint")
			}
			if otel.GetTracerProvider() != tr.TracerProvider() {
				t.Fatal("the provider is not the global one")
			}
			got := otel.GetTextMapPropagator().Fields()
			slices.Sort(got)
			if strings.Join(got, ",") != "baggage,traceparent,tracestate" {
				t.Fatalf("propagator fields %v", got)
			}
			if !strings.Contains(logs.String(), `"service_name":"payments-svc"`) {
				t.Fatalf("log: %s", logs.String())
			}
			// Nothing was exported, so the unreachable endpoint costs nothing.
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal("second shutdown:", err)
			}
		})
	}
}

func TestSetupRefuses(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"protocol":            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		"resource attributes": {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			keepGlobals(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			for k, v := range env {
				t.Setenv(k, v)
			}
			before := otel.GetTracerProvider()
			if _, err := Setup(context.Background(), discard); err == nil {
				t.Fatal("no error")
			}
			if otel.GetTracerProvider() != before {
				t.Fatal("a refused Setup installed a provider")
			}
		})
	}
}

func TestResource(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"default":             {nil, DefaultServiceName},
		"OTEL_SERVICE_NAME":   {map[string]string{"OTEL_SERVICE_NAME": "payments-eu"}, "payments-eu"},
		"resource attributes": {map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=staging"}, "from-attrs"},
		"name beats attributes": {map[string]string{
			"OTEL_SERVICE_NAME": "by-name", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs",
		}, "by-name"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			res, err := newResource(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got, _ := res.Set().Value("service.name")
			if got.AsString() != tc.want {
				t.Fatalf("service.name = %q, want %q (%v)", got.AsString(), tc.want, res)
			}
			if v, _ := res.Set().Value("telemetry.sdk.language"); v.AsString() != "go" {
				t.Fatalf("no SDK attributes: %v", res)
			}
		})
	}
}

func TestLogHandler(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "payments-svc")

	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	log.WithGroup("g").InfoContext(ctx, "grouped", "k", "v")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var in, out, grouped map[string]any
	for i, m := range []*map[string]any{&in, &out, &grouped} {
		if err := json.Unmarshal(lines[i], m); err != nil {
			t.Fatal(err)
		}
	}
	sc := span.SpanContext()
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["service"] != "payments-svc" {
		t.Fatalf("inside a span: %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Fatalf("outside a span: %v", out)
	}
	if g, _ := grouped["g"].(map[string]any); g["k"] != "v" || g["trace_id"] != sc.TraceID().String() {
		t.Fatalf("grouped: %v", grouped)
	}
}

func TestPropagator(t *testing.T) {
	t.Parallel()
	carrier := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "k=v"}
	ctx := Propagator().Extract(context.Background(), carrier)
	out := propagation.MapCarrier{}
	Propagator().Inject(ctx, out)
	if out["traceparent"] != carrier["traceparent"] || out["baggage"] != "k=v" {
		t.Fatalf("round trip: %v", out)
	}
}
