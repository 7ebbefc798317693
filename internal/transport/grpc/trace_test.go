package grpctransport

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	"github.com/payments-svc/payments-svc/internal/testsupport"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// tracedEnv is start with every span recorded in memory.
func tracedEnv(t *testing.T) (*env, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return startOpts(t, opts{tp: tp}), exp
}

// spansWhen returns the exported spans once done holds for them. A gRPC
// server span ends after the status has gone out, so a client can see its
// answer, and even send its next call, before the span is exported.
func spansWhen(t *testing.T, exp *tracetest.InMemoryExporter, done func(tracetest.SpanStubs) bool) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exp.GetSpans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans never complete: %v", spans.Snapshots())
		}
		runtime.Gosched()
	}
}

func spansNamed(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceServerSpan: each PaymentService call is a server span continuing
// the caller's traceparent, with the request id, merchant, payment id and
// idempotency outcome as attributes and nothing the client sent in
// metadata, its key or its idempotency key; the create.lua EVALSHA is its
// child; and the call's log line carries the span's ids.
func TestTraceServerSpan(t *testing.T) {
	t.Parallel()
	e, exp := tracedEnv(t)
	const parentTrace, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	const idemKey = "idem-key-never-on-a-span"
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"traceparent", "00-"+parentTrace+"-"+parentSpan+"-01",
		"x-request-id", "req-trace-1",
		"x-private", "metadata-value-never-on-a-span")

	created, err := e.client.RequestPayment(ctx, validReq(idemKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RequestPayment(ctx, validReq(idemKey)); err != nil {
		t.Fatal(err)
	}
	mismatch := validReq(idemKey)
	mismatch.AmountMinor++
	if _, err := e.client.RequestPayment(ctx, mismatch); err == nil {
		t.Fatal("mismatch accepted")
	}
	if _, err := e.client.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: created.GetPaymentId()}); err != nil {
		t.Fatal(err)
	}

	spans := spansWhen(t, exp, func(s tracetest.SpanStubs) bool {
		return len(spansNamed(s, "payments.v1.PaymentService/RequestPayment")) == 3 &&
			len(spansNamed(s, "payments.v1.PaymentService/GetPayment")) == 1
	})
	reqs := spansNamed(spans, "payments.v1.PaymentService/RequestPayment")
	// Spans are exported as they end, which need not be the order of the
	// calls; the calls were sequential, so their starts are.
	slices.SortFunc(reqs, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	for i, want := range []string{"created", "replayed", "mismatch"} {
		s := reqs[i]
		a := testsupport.SpanAttrs(s)
		if s.SpanKind != trace.SpanKindServer || s.SpanContext.TraceID().String() != parentTrace || s.Parent.SpanID().String() != parentSpan {
			t.Fatalf("span %d: kind %v, trace %s, parent %s", i, s.SpanKind, s.SpanContext.TraceID(), s.Parent.SpanID())
		}
		if a[telemetry.AttrIdempotency] != want || a[telemetry.AttrMerchantID] != "m_a" || a[telemetry.AttrRequestID] != "req-trace-1" {
			t.Fatalf("span %d attributes %v", i, a)
		}
		if want != "mismatch" && a[telemetry.AttrPaymentID] != created.GetPaymentId() {
			t.Fatalf("span %d payment id %q, want %q", i, a[telemetry.AttrPaymentID], created.GetPaymentId())
		}
	}
	gets := spansNamed(spans, "payments.v1.PaymentService/GetPayment")
	if len(gets) != 1 || testsupport.SpanAttrs(gets[0])[telemetry.AttrPaymentID] != created.GetPaymentId() || testsupport.SpanAttrs(gets[0])[telemetry.AttrMerchantID] != "m_a" {
		t.Fatalf("GetPayment spans %v", gets)
	}

	for _, s := range spans {
		for k, v := range testsupport.SpanAttrs(s) {
			for _, secret := range []string{keyA, idemKey, "metadata-value-never-on-a-span", "do-not-log-me", "secret-ish"} {
				if strings.Contains(v, secret) || strings.Contains(k, secret) {
					t.Fatalf("span %q attribute %s=%s holds %q", s.Name, k, v, secret)
				}
			}
		}
	}

	// The first call's create.lua ran as a Redis span under its server span.
	evals := spansNamed(spans, "evalsha create.lua")
	if len(evals) == 0 {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("no evalsha create.lua span among %v", names)
	}
	ev := evals[0]
	if ev.Parent.SpanID() != reqs[0].SpanContext.SpanID() || ev.SpanKind != trace.SpanKindClient || testsupport.SpanAttrs(ev)[storage.AttrScript] != "create.lua" {
		t.Fatalf("evalsha span: parent %s (server %s), kind %v, attributes %v", ev.Parent.SpanID(), reqs[0].SpanContext.SpanID(), ev.SpanKind, testsupport.SpanAttrs(ev))
	}

	// Every call's log line names its server span.
	var rpcLines int
	for _, l := range e.logs.lines(t) {
		if l["msg"] != "rpc" || !strings.HasPrefix(l["method"].(string), "/payments.v1.PaymentService/") {
			continue
		}
		rpcLines++
		if l["trace_id"] != parentTrace {
			t.Fatalf("log line without the trace id: %v", l)
		}
		found := false
		for _, s := range spans {
			if s.SpanContext.SpanID().String() == l["span_id"] && s.SpanKind == trace.SpanKindServer {
				found = true
			}
		}
		if !found {
			t.Fatalf("log line span_id %v is no server span", l["span_id"])
		}
	}
	if rpcLines != 4 {
		t.Fatalf("%d rpc log lines", rpcLines)
	}
}

// TestTraceOffUnannotated: without a span the observer adds nothing and the
// log lines carry no trace ids.
func TestTraceOffUnannotated(t *testing.T) {
	t.Parallel()
	e := start(t, nil, nil)
	if _, err := e.client.RequestPayment(context.Background(), validReq("k-untraced")); err != nil {
		t.Fatal(err)
	}
	for _, l := range e.logs.lines(t) {
		if _, ok := l["trace_id"]; ok {
			t.Fatalf("trace id without tracing: %v", l)
		}
	}
}
