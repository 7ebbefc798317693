package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/payments-svc/payments-svc/internal/payments"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDomainCounters(t *testing.T) {
	m := New()
	ctx := context.Background()
	for _, o := range []payments.Outcome{payments.OutcomeCreated, payments.OutcomeCreated, payments.OutcomeReplayed, payments.OutcomeMismatch, ""} {
		m.ObserveCall(ctx, "/payments.v1.PaymentService/RequestPayment", o)
	}
	m.ObserveWebhook("applied")
	m.ObserveHTTP(context.Background(), "/v1/webhooks/provider", "POST", 200, 0.002)
	m.ObserveReplicaAckShortfall()
	m.ObserveRedisEvent("master_changed")
	got := scrape(t, m)
	for _, want := range []string{
		"payments_created_total 2",
		"payments_idempotent_replays_total 1",
		"payments_idempotency_mismatch_total 1",
		"redis_replica_acks_shortfall_total 1",
		`redis_topology_events_total{event="master_changed"} 1`,
		`redis_topology_events_total{event="readonly"} 0`,
		`webhook_events_total{outcome="applied"} 1`,
		`webhook_events_total{outcome="conflict"} 0`,
		`http_request_duration_seconds_count{code="200",method="POST",route="/v1/webhooks/provider"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestRedisHookCountsFailures(t *testing.T) {
	m := New()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{
		Addr: mr.Addr(), MaxRetries: -1, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { client.Close() })
	client.AddHook(m.RedisHook())
	ctx := context.Background()

	if err := client.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing = %v, want redis.Nil", err)
	}
	if err := client.EvalSha(ctx, "0000000000000000000000000000000000000000", nil).Err(); err == nil {
		t.Fatal("EVALSHA of an unknown script succeeded")
	}
	if got := scrape(t, m); !strings.Contains(got, "redis_errors_total 0") {
		t.Errorf("nil replies and NOSCRIPT were counted as errors:\n%s", grep(got, "redis_errors"))
	}

	_ = client.Do(ctx, "NOSUCHCOMMAND").Err()
	pipe := client.Pipeline()
	pipe.Do(ctx, "NOSUCHCOMMAND")
	_, _ = pipe.Exec(ctx)
	mr.Close()
	_ = client.Ping(ctx).Err()
	// An error reply, a failed pipeline, and a command whose dials all fail
	// (go-redis dials more than once, so that part counts at least once).
	if got := errorCount(t, scrape(t, m)); got < 3 {
		t.Errorf("redis_errors_total = %v, want at least 3", got)
	}
}

func errorCount(t *testing.T, exposition string) float64 {
	t.Helper()
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, "redis_errors_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no redis_errors_total sample")
	return 0
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// scrapeOpenMetrics reads the exposition as a scraper asking for
// OpenMetrics, the format that carries exemplars.
func scrapeOpenMetrics(t *testing.T, m *Metrics) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q", ct)
	}
	return rec.Body.String()
}

// TestExemplars: a sampled call's trace id rides on the gRPC and HTTP
// latency buckets as an exemplar; an unsampled or untraced one adds none.
func TestExemplars(t *testing.T) {
	t.Parallel()
	m := New()
	sampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x99, 2}, SpanID: trace.SpanID{2},
	}))
	if Exemplar(unsampled) != nil || Exemplar(context.Background()) != nil {
		t.Fatal("exemplar without a sampled span")
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/payments.v1.PaymentService/GetPayment"}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	for _, ctx := range []context.Context{sampled, unsampled} {
		if _, err := m.GRPCInterceptor()(ctx, nil, info, ok); err != nil {
			t.Fatal(err)
		}
		m.ObserveHTTP(ctx, "/v1/payments", "POST", 201, 0.003)
	}
	m.ObserveHTTP(context.Background(), "/v1/payments", "POST", 201, 0.004)

	body := scrapeOpenMetrics(t, m)
	want := `# {trace_id="` + trace.TraceID{0x4b, 0xf9, 1}.String() + `"}`
	var grpcEx, httpEx int
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, trace.TraceID{0x99, 2}.String()) {
			t.Fatalf("unsampled trace as exemplar: %s", l)
		}
		if !strings.Contains(l, want) {
			continue
		}
		switch {
		case strings.HasPrefix(l, "grpc_server_handling_seconds_bucket{"):
			grpcEx++
		case strings.HasPrefix(l, "http_request_duration_seconds_bucket{"):
			httpEx++
		}
	}
	if grpcEx != 1 || httpEx != 1 {
		t.Fatalf("exemplars: grpc %d, http %d, want 1 each\n%s", grpcEx, httpEx, body)
	}
}
