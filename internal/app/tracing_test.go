package app

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/auth"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// collector is an OTLP/gRPC trace receiver that keeps what it is sent.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	names []string // service.name of each batch
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				c.names = append(c.names, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c, lis.Addr().String()
}

// TestTracingEndToEnd: with OTEL_EXPORTER_OTLP_ENDPOINT set, a JSON API
// call through the running app becomes one trace, HTTP span → gRPC client
// span → gRPC server span → the create.lua EVALSHA, and Run's shutdown
// flushes it to the collector after the drain, as service payments-svc.
func TestTracingEndToEnd(t *testing.T) {
	col, addr := startCollector(t)
	for _, v := range []string{"OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(v, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	tp, prop, eh := otel.GetTracerProvider(), otel.GetTextMapPropagator(), otel.GetErrorHandler()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(prop)
		otel.SetErrorHandler(eh)
	})

	a, conn, stop := startApp(t, testConfig(""))
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+a.HTTPAddr().String()+"/v1/payments",
		strings.NewReader(`{"amountMinor":"1234","currency":"USD","orderId":"order-traced"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+auth.DevKey)
	req.Header.Set("Idempotency-Key", "k-end-to-end")
	// Probes are not traced.
	for _, svc := range []string{"", "payments.v1.PaymentService"} {
		if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := paymentsv1.NewPaymentServiceClient(conn).Health(context.Background(), &paymentsv1.HealthRequest{}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create = %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	byName := map[string][]*tracepb.Span{}
	for _, s := range col.spans {
		byName[s.GetName()] = append(byName[s.GetName()], s)
	}
	if len(col.names) == 0 || col.names[0] != "payments-svc" {
		t.Fatalf("service names %v", col.names)
	}
	for name := range byName {
		if strings.Contains(name, "Health") {
			t.Errorf("span %q: probes must not be traced", name)
		}
	}
	httpSpans, grpcSpans, evals := byName["POST /v1/payments"], byName["payments.v1.PaymentService/RequestPayment"], byName["evalsha create.lua"]
	if len(httpSpans) != 1 || len(grpcSpans) != 2 || len(evals) != 1 {
		var names []string
		for n := range byName {
			names = append(names, n)
		}
		t.Fatalf("spans: %v", names)
	}
	var client, server *tracepb.Span
	for _, s := range grpcSpans {
		switch s.GetKind() {
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		}
	}
	chain := []*tracepb.Span{httpSpans[0], client, server, evals[0]}
	for i := 1; i < len(chain); i++ {
		if chain[i] == nil || hex.EncodeToString(chain[i].GetParentSpanId()) != hex.EncodeToString(chain[i-1].GetSpanId()) ||
			hex.EncodeToString(chain[i].GetTraceId()) != hex.EncodeToString(chain[0].GetTraceId()) {
			t.Fatalf("span %d (%s) is not the child of %s", i, chain[i].GetName(), chain[i-1].GetName())
		}
	}
	outcome := ""
	for _, kv := range server.GetAttributes() {
		if kv.GetKey() == "payments.idempotency.outcome" {
			outcome = kv.GetValue().GetStringValue()
		}
	}
	if outcome != "created" {
		t.Fatalf("server span attributes %v", server.GetAttributes())
	}
}
