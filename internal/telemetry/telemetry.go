// Package telemetry owns the OpenTelemetry tracing of payments-svc: reading
// the standard OTEL_* environment, building the SDK tracer provider with its
// OTLP exporter and resource, installing it and the W3C propagators as the
// process's globals, flushing it at shutdown, and the slog handler that
// stamps trace_id and span_id on every log line written inside a traced
// call. It instruments nothing itself: internal/app hands the provider to
// the gRPC, HTTP and Redis instrumentation.
//
// With neither OTEL_EXPORTER_OTLP_ENDPOINT nor
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (or with OTEL_SDK_DISABLED=true),
// tracing is off: nothing is installed, the global provider stays the no-op
// one, and the callers leave their instrumentation out.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// DefaultServiceName is service.name when neither OTEL_SERVICE_NAME nor
// OTEL_RESOURCE_ATTRIBUTES names the service.
const DefaultServiceName = "payments-svc"

// Tracing is the outcome of Setup: an installed SDK provider, or nothing.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// Enabled reports whether Setup installed a tracer provider.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// TracerProvider is the installed provider, or nil when tracing is off.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if !t.Enabled() {
		return nil
	}
	return t.tp
}

// Shutdown flushes the spans still queued and stops the exporter. It does
// nothing when tracing is off, and may be called more than once.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Propagator is the W3C trace context and baggage propagator Setup installs.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Setup reads the OTEL_* environment. With an OTLP endpoint it builds a
// tracer provider that batches spans to it (over gRPC, or over HTTP when
// OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL is http/protobuf), samples as
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG say (parent-based,
// always on, by default), and describes the process with OTEL_SERVICE_NAME
// and OTEL_RESOURCE_ATTRIBUTES; it installs that provider and the W3C
// propagators as the globals. Without an endpoint it installs nothing and
// returns a disabled Tracing. The exporter does not connect here: a
// collector that is down loses spans, never calls.
func Setup(ctx context.Context, log *slog.Logger) (*Tracing, error) {
	if !configured() {
		return &Tracing{}, nil
	}
	exp, protocol, err := newExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_*: %w", err)
	}
	res, err := newResource(ctx)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator())
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", slog.String("error", err.Error()))
	}))
	name, _ := res.Set().Value("service.name")
	log.Info("tracing enabled", slog.String("protocol", protocol), slog.String("service_name", name.AsString()))
	return &Tracing{tp: tp}, nil
}

// configured reports whether the environment asks for traces.
func configured() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// newExporter builds the OTLP exporter the protocol variables ask for. The
// exporters read the endpoint, headers, TLS and timeout variables
// themselves.
func newExporter(ctx context.Context) (sdktrace.SpanExporter, string, error) {
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "", "grpc":
		exp, err := otlptracegrpc.New(ctx)
		return exp, "grpc", err
	case "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		return exp, protocol, err
	default:
		return nil, "", fmt.Errorf("protocol %q is not supported; use grpc or http/protobuf", protocol)
	}
}

// newResource describes the process: service.name defaults to
// DefaultServiceName, and the environment overrides it.
func newResource(ctx context.Context) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if errors.Is(err, resource.ErrPartialResource) {
		// A malformed entry is dropped, the rest kept; Setup still fails
		// loudly so the operator fixes it.
		return nil, err
	}
	return res, err
}

// Span attributes the service sets, on the gRPC and the HTTP plane alike, so
// one query finds a payment's spans whichever way it came in. Only what the
// log lines hold goes on a span: never metadata values, keys or credentials.
// The webhook id is the provider's event id, which is not a secret.
const (
	AttrRequestID      = "payments.request_id"
	AttrMerchantID     = "payments.merchant_id"
	AttrPaymentID      = "payments.payment_id"
	AttrIdempotency    = "payments.idempotency.outcome"
	AttrWebhookOutcome = "payments.webhook.outcome"
	AttrWebhookID      = "payments.webhook.id"
)
