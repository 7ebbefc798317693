// Package httptransport owns the HTTP planes of payments-svc: the public one,
// which is the provider webhook intake and the JSON API (grpc-gateway in
// front of the gRPC server, the Idempotency-Key rules, problem+json and the
// OpenAPI document), and the private admin one, which serves the Prometheus
// scrape, the liveness and readiness probes and, when enabled, pprof. Both
// share the access log. Webhook checks run in a fixed order: method, content
// type, size, signature on the raw bytes, then JSON, then Redis.
package httptransport

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"strconv"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/webhook"
)

// MaxBodyBytes bounds a webhook body; larger ones are refused with 413.
const MaxBodyBytes = 256 << 10

// WebhookPath is where the provider posts events.
const WebhookPath = "/v1/webhooks/provider"

// EventStore applies provider events to payments.
type EventStore interface {
	ApplyEvent(ctx context.Context, eventID, bodyHash string, s payments.Settlement) (payments.SettleOutcome, error)
}

// Observer is told about webhook outcomes and request latencies, for metrics.
// ctx is the request's, so a latency can carry the trace id as an exemplar.
type Observer interface {
	ObserveWebhook(outcome string)
	ObserveHTTP(ctx context.Context, route, method string, code int, seconds float64)
}

// Config is what NewHandler needs.
type Config struct {
	Logger   *slog.Logger
	Store    EventStore
	Verifier *webhook.Verifier
	// API, if set, serves the JSON API (NewAPI) beside the webhook.
	API      http.Handler
	Observer Observer
	// TracerProvider, if set, traces every request (otelhttp) in a span
	// named by method and route, continuing the caller's traceparent;
	// nil leaves tracing out.
	TracerProvider trace.TracerProvider
	// Propagators read the caller's trace context; nil means W3C trace
	// context and baggage.
	Propagators propagation.TextMapPropagator
}

// NewHandler returns the public routes, which an ingress may expose: the
// provider webhook and, when configured, the JSON API and its OpenAPI
// document, wrapped in the access log and, when tracing, in a server span.
func NewHandler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	// The webhook route takes every method so that a wrong one still gets a
	// problem+json answer rather than the mux's plain-text 405.
	mux.Handle(WebhookPath, &webhookHandler{store: cfg.Store, verifier: cfg.Verifier})
	if cfg.API != nil {
		mux.Handle(PaymentsPath, cfg.API)
		mux.Handle(PaymentsPath+"/", cfg.API)
		mux.Handle(OpenAPIPath, cfg.API)
	}
	h := accessLog(cfg.Logger, cfg.Observer, mux)
	if cfg.TracerProvider == nil {
		return h
	}
	props := cfg.Propagators
	if props == nil {
		props = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	// The span is outermost, so the access log and the handlers run inside
	// it: the log line carries its ids and the note its attributes.
	return otelhttp.NewHandler(h, "http",
		otelhttp.WithTracerProvider(cfg.TracerProvider),
		otelhttp.WithPropagators(props),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			// The access log's route names: a path never becomes a span
			// name, so names stay few.
			return r.Method + " " + routeOf(r)
		}))
}

// AdminConfig is what NewAdminHandler needs.
type AdminConfig struct {
	Logger *slog.Logger
	// Ready reports readiness; it follows Redis like grpc.health.v1.
	Ready func() bool
	// Metrics serves /metrics.
	Metrics http.Handler
	// Pprof serves the Go runtime profiles under /debug/pprof/.
	Pprof    bool
	Observer Observer
}

// NewAdminHandler returns the private routes: /metrics, /healthz, /readyz
// and, when enabled, /debug/pprof/. They reveal internals, so they belong on
// a port that only the cluster's scrapers and operators reach.
func NewAdminHandler(cfg AdminConfig) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", cfg.Metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			writeText(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return accessLog(cfg.Logger, cfg.Observer, mux)
}

type webhookHandler struct {
	store    EventStore
	verifier *webhook.Verifier
}

func (h *webhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	note := noteFrom(r.Context())
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		note.fail("bad_request", nil)
		writeProblem(w, r, http.StatusMethodNotAllowed, "only POST is accepted", nil)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		note.fail("bad_request", nil)
		writeProblem(w, r, http.StatusUnsupportedMediaType, "Content-Type must be application/json", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		note.fail("bad_request", err)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "body exceeds "+strconv.Itoa(MaxBodyBytes)+" bytes", nil)
			return
		}
		writeProblem(w, r, http.StatusBadRequest, "body could not be read", nil)
		return
	}

	// Authenticity first: nothing below runs for an unsigned body.
	eventID := r.Header.Get(webhook.HeaderID)
	if err := h.verifier.Verify(eventID, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body); err != nil {
		outcome := "invalid_signature"
		if errors.Is(err, webhook.ErrTimestamp) {
			outcome = "stale_timestamp"
		}
		note.fail(outcome, err)
		writeProblem(w, r, http.StatusUnauthorized, err.Error(), nil)
		return
	}
	note.eventID = eventID

	ev, err := webhook.DecodeEvent(body)
	if err != nil {
		note.fail("bad_request", err)
		var verr *payments.ValidationError
		if errors.As(err, &verr) {
			writeProblem(w, r, http.StatusUnprocessableEntity, "the event has invalid fields", verr.Violations)
			return
		}
		writeProblem(w, r, http.StatusBadRequest, "body is not a single JSON object", nil)
		return
	}
	note.paymentID = ev.PaymentID

	sum := sha256.Sum256(body)
	outcome, err := h.store.ApplyEvent(r.Context(), eventID, hex.EncodeToString(sum[:]), ev.Settlement())
	if err != nil {
		h.fail(w, r, note, err)
		return
	}
	note.outcome = string(outcome)
	writeJSON(w, http.StatusOK, map[string]string{"outcome": string(outcome)})
}

// fail maps a storage error to its answer: the HTTP twin of the gRPC error
// model in ARCHITECTURE.md.
func (h *webhookHandler) fail(w http.ResponseWriter, r *http.Request, note *requestNote, err error) {
	switch {
	case errors.Is(err, payments.ErrNotFound):
		note.fail("unknown_payment", err)
		writeProblem(w, r, http.StatusNotFound, "no payment has this payment_id", nil)
	case errors.Is(err, payments.ErrAmountMismatch):
		note.fail("bad_request", err)
		writeProblem(w, r, http.StatusUnprocessableEntity, "the event does not match the payment", []payments.FieldViolation{
			{Field: "amount_minor", Reason: "MISMATCH", Description: "amount_minor and currency must equal the payment's"},
			{Field: "currency", Reason: "MISMATCH", Description: "amount_minor and currency must equal the payment's"},
		})
	case errors.Is(err, payments.ErrEventConflict):
		note.fail("conflict", err)
		writeProblem(w, r, http.StatusConflict, "this webhook-id was already delivered with a different body", nil)
	case errors.Is(err, payments.ErrSettlementConflict):
		// A provider contradicting itself needs a human: warn.
		note.fail("conflict", err)
		note.level = slog.LevelWarn
		writeProblem(w, r, http.StatusConflict, "the payment is already settled with the opposite outcome", nil)
	case errors.Is(err, payments.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		note.fail("unavailable", err)
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, "payment store unavailable; redeliver the event later", nil)
	default:
		note.fail("error", err)
		note.level = slog.LevelError
		writeProblem(w, r, http.StatusInternalServerError, "internal error", nil)
	}
}

// problem is an RFC 9457 problem details body. Field violations ride in the
// "errors" extension member.
type problem struct {
	Type      string           `json:"type"`
	Title     string           `json:"title"`
	Status    int              `json:"status"`
	Detail    string           `json:"detail"`
	Instance  string           `json:"instance,omitempty"`
	RequestID string           `json:"request_id,omitempty"`
	Errors    []fieldViolation `json:"errors,omitempty"`
}

type fieldViolation struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, code int, detail string, vs []payments.FieldViolation) {
	writeTypedProblem(w, r, code, "about:blank", detail, vs)
}

// writeTypedProblem is writeProblem with a problem type URI.
func writeTypedProblem(w http.ResponseWriter, r *http.Request, code int, typ, detail string, vs []payments.FieldViolation) {
	p := problem{
		Type:      typ,
		Title:     http.StatusText(code),
		Status:    code,
		Detail:    detail,
		Instance:  r.URL.Path,
		RequestID: w.Header().Get(RequestIDHeader),
	}
	for _, v := range vs {
		p.Errors = append(p.Errors, fieldViolation{Field: v.Field, Reason: v.Reason, Detail: v.Description})
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, s+"\n")
}
