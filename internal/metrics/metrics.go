// Package metrics owns the Prometheus instrumentation of payments-svc: a
// registry per process (never the global one, so tests can read their own
// counters), the gRPC server metrics, the domain counters, the HTTP request
// histogram, a go-redis hook that counts Redis errors, and the count of
// writes the replicas did not acknowledge in time.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// WebhookOutcomes are the values of the outcome label of
// webhook_events_total. Each is pre-initialised at zero so dashboards and
// alerts see the series before the first event.
var WebhookOutcomes = []string{
	"applied", "duplicate", "already_settled", "invalid_signature", "stale_timestamp",
	"bad_request", "unknown_payment", "conflict", "unavailable", "error",
}

// RedisEvents are the values of the event label of
// redis_topology_events_total: what a failover or a resharding looks like
// from the client. Each is pre-initialised at zero.
var RedisEvents = []string{
	"connect", "connect_failed", "master_changed",
	"readonly", "moved", "ask", "clusterdown", "tryagain", "masterdown", "loading", "noreplicas",
}

// Metrics holds every collector of one process.
type Metrics struct {
	Registry *prometheus.Registry
	// GRPC is the server metrics middleware; install its interceptor and
	// call InitializeMetrics once services are registered.
	GRPC *grpcprom.ServerMetrics

	created       prometheus.Counter
	replays       prometheus.Counter
	mismatches    prometheus.Counter
	webhookEvents *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	redisErrors   prometheus.Counter
	redisEvents   *prometheus.CounterVec
	ackShortfalls prometheus.Counter
	reloads       *prometheus.CounterVec
}

// ReloadedFiles are the values of the file label of config_reloads_total.
var ReloadedFiles = []string{"api_keys", "tls"}

// New builds and registers every collector, Go runtime and process metrics
// included.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		GRPC: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
		)),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payments_created_total", Help: "Payments created by RequestPayment.",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payments_idempotent_replays_total", Help: "RequestPayment calls answered with the original result of an earlier call.",
		}),
		mismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payments_idempotency_mismatch_total", Help: "RequestPayment calls refused because their idempotency key was used with a different request.",
		}),
		webhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "webhook_events_total", Help: "Provider webhook deliveries by outcome.",
		}, []string{"outcome"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status code.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"route", "method", "code"}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_errors_total", Help: "Redis commands that failed (connection errors, timeouts and error replies).",
		}),
		redisEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_topology_events_total",
			Help: "Redis topology changes seen by the client: new connections, a new Sentinel master, and READONLY, MOVED, ASK and other failover replies.",
		}, []string{"event"}),
		ackShortfalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redis_replica_acks_shortfall_total",
			Help: "Creates and settlements written on the Redis primary but answered UNAVAILABLE because fewer replicas acknowledged them in time than PAYMENTS_REDIS_MIN_REPLICA_ACKS.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_reloads_total",
			Help: "Re-reads of changed credential files (API keys, TLS certificates) by result; an error keeps the previous contents in force.",
		}, []string{"file", "result"}),
	}
	for _, f := range ReloadedFiles {
		m.reloads.WithLabelValues(f, "ok")
		m.reloads.WithLabelValues(f, "error")
	}
	for _, o := range WebhookOutcomes {
		m.webhookEvents.WithLabelValues(o)
	}
	for _, e := range RedisEvents {
		m.redisEvents.WithLabelValues(e)
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.GRPC, m.created, m.replays, m.mismatches, m.webhookEvents, m.httpDuration, m.redisErrors, m.redisEvents, m.ackShortfalls, m.reloads,
	)
	return m
}

// Handler serves the registry in the Prometheus text format, or in the
// OpenMetrics format to a scraper that asks for it, which is the one that
// carries exemplars.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, EnableOpenMetrics: true})
}

// GRPCInterceptor is the gRPC server metrics interceptor, with the trace id
// of a sampled call as the exemplar of its latency and count.
func (m *Metrics) GRPCInterceptor() grpc.UnaryServerInterceptor {
	return m.GRPC.UnaryServerInterceptor(grpcprom.WithExemplarFromContext(Exemplar))
}

// Exemplar returns the trace_id label of the sampled span in ctx, or nil
// (no exemplar) outside one.
func Exemplar(ctx context.Context) prometheus.Labels {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return prometheus.Labels{"trace_id": sc.TraceID().String()}
	}
	return nil
}

// ObserveCall counts the idempotency outcome of a finished gRPC call.
func (m *Metrics) ObserveCall(_ context.Context, _ string, outcome payments.Outcome) {
	switch outcome {
	case payments.OutcomeCreated:
		m.created.Inc()
	case payments.OutcomeReplayed:
		m.replays.Inc()
	case payments.OutcomeMismatch:
		m.mismatches.Inc()
	}
}

// ObserveWebhook counts one webhook delivery by outcome.
func (m *Metrics) ObserveWebhook(outcome string) {
	m.webhookEvents.WithLabelValues(outcome).Inc()
}

// ObserveHTTP records the latency of one HTTP request, with the trace id as
// exemplar when ctx holds a sampled span.
func (m *Metrics) ObserveHTTP(ctx context.Context, route, method string, code int, seconds float64) {
	o := m.httpDuration.WithLabelValues(route, method, strconv.Itoa(code))
	if eo, ok := o.(prometheus.ExemplarObserver); ok {
		if ex := Exemplar(ctx); ex != nil {
			eo.ObserveWithExemplar(seconds, ex)
			return
		}
	}
	o.Observe(seconds)
}

// ObserveRedisEvent counts one topology event, one of RedisEvents.
func (m *Metrics) ObserveRedisEvent(event string) { m.redisEvents.WithLabelValues(event).Inc() }

// ObserveReplicaAckShortfall counts one write that fewer replicas
// acknowledged than required.
func (m *Metrics) ObserveReplicaAckShortfall() { m.ackShortfalls.Inc() }

// ObserveReload counts one re-read of a changed file, one of ReloadedFiles;
// ok reports whether its contents were taken.
func (m *Metrics) ObserveReload(file string, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.reloads.WithLabelValues(file, result).Inc()
}

// RedisHook returns a go-redis hook that counts failed commands. A nil reply
// (redis.Nil) is an answer, not an error.
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m.redisErrors} }

type redisHook struct{ errs prometheus.Counter }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.errs.Inc()
		}
		return conn, err
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if counts(err) {
			h.errs.Inc()
		}
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if counts(err) {
			h.errs.Inc()
		}
		return err
	}
}

// counts decides whether an error is a Redis failure worth counting. NOSCRIPT
// is the normal first reply after a restart, answered by the EVAL fallback.
func counts(err error) bool {
	return err != nil && !errors.Is(err, redis.Nil) && !strings.HasPrefix(err.Error(), "NOSCRIPT")
}
