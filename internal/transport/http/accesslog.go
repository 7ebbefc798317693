package httptransport

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/payments-svc/payments-svc/internal/requestid"
	"github.com/payments-svc/payments-svc/internal/telemetry"
)

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-Id"

// requestNote is what a handler tells the access log about its request.
type requestNote struct {
	requestID string
	outcome   string
	err       error
	eventID   string
	paymentID string
	level     slog.Level
}

func (n *requestNote) fail(outcome string, err error) {
	n.outcome, n.err = outcome, err
}

type noteKey struct{}

// noteFrom returns the request's note; outside accessLog it returns a
// throwaway one, so handlers never need to check.
func noteFrom(ctx context.Context) *requestNote {
	if n, ok := ctx.Value(noteKey{}).(*requestNote); ok {
		return n
	}
	return &requestNote{}
}

// statusWriter remembers the status and counts the bytes of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// quietRoutes are scraped and probed every few seconds; their lines are
// logged at debug so they do not drown the traffic that matters.
const pprofPrefix = "/debug/pprof/"

var quietRoutes = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

// accessLog writes one JSON line per request with its route, status,
// latency, size, request id and, for webhooks, the outcome; and feeds the
// latency histogram and the webhook counter.
func accessLog(log *slog.Logger, obs Observer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := requestid.Resolve(r.Header.Get(RequestIDHeader))
		w.Header().Set(RequestIDHeader, rid)
		note := &requestNote{requestID: rid, level: slog.LevelInfo}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), noteKey{}, note)))

		route := routeOf(r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		elapsed := time.Since(start)
		level := note.level
		if quietRoutes[route] {
			level = slog.LevelDebug
		}
		if sw.status >= 500 && level < slog.LevelError && note.outcome != "unavailable" {
			level = slog.LevelError
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", sw.status),
			slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
			slog.Int("bytes", sw.bytes),
			slog.String("request_id", rid),
			slog.String("remote", r.RemoteAddr),
		}
		if note.outcome != "" {
			attrs = append(attrs, slog.String("outcome", note.outcome))
		}
		if note.eventID != "" {
			attrs = append(attrs, slog.String("webhook_id", note.eventID))
		}
		if note.paymentID != "" {
			attrs = append(attrs, slog.String("payment_id", note.paymentID))
		}
		if note.err != nil {
			attrs = append(attrs, slog.String("error", note.err.Error()))
		}
		annotateSpan(r.Context(), route, note)
		log.LogAttrs(r.Context(), level, "http", attrs...)
		if obs != nil {
			obs.ObserveHTTP(r.Context(), route, r.Method, sw.status, elapsed.Seconds())
			if route == WebhookPath && note.outcome != "" {
				obs.ObserveWebhook(note.outcome)
			}
		}
	})
}

// annotateSpan copies the request id and the handler's note onto the
// request's span (otelhttp's server span), when one is recording.
func annotateSpan(ctx context.Context, route string, note *requestNote) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, attribute.String(telemetry.AttrRequestID, note.requestID))
	if route == WebhookPath && note.outcome != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrWebhookOutcome, note.outcome))
	}
	if note.eventID != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrWebhookID, note.eventID))
	}
	if note.paymentID != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrPaymentID, note.paymentID))
	}
	span.SetAttributes(attrs...)
}

// routeOf names the route for logs and metric labels. Unknown paths share
// one label, so a scanner cannot blow up the metric's cardinality.
func routeOf(r *http.Request) string {
	switch p := r.URL.Path; {
	case p == WebhookPath || p == PaymentsPath || p == OpenAPIPath || p == "/metrics" || p == "/healthz" || p == "/readyz":
		return p
	case strings.HasPrefix(p, PaymentsPath+"/"):
		return PaymentsPath + "/{payment_id}"
	case strings.HasPrefix(p, pprofPrefix):
		return pprofPrefix
	default:
		return "unmatched"
	}
}
