package httptransport

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/payments-svc/payments-svc/internal/metrics"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	"github.com/payments-svc/payments-svc/internal/webhook"
)

var (
	keyCurrent = []byte("current-secret-current-secret-32")
	keyOld     = []byte("old-secret-old-secret-old-secret")
	keyOther   = []byte("other-secret-other-secret-other!")
	clock      = time.Unix(1_790_000_000, 0)
)

type env struct {
	srv     *httptest.Server
	admin   *httptest.Server
	mr      *miniredis.Miniredis
	repo    *storage.Repository
	metrics *metrics.Metrics
	logs    *bytes.Buffer
	logMu   *sync.Mutex
	ready   bool
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func start(t *testing.T) *env {
	t.Helper()
	return startWith(t, storage.Options{IdempotencyTTL: time.Hour})
}

// startWith serves the real repository with opts on miniredis; the metrics
// observe it as the app's do.
func startWith(t *testing.T, opts storage.Options) *env {
	t.Helper()
	return startTraced(t, opts, nil)
}

// startTraced is startWith with the public handler traced into tp, when set,
// and the log lines stamped with trace ids.
func startTraced(t *testing.T, opts storage.Options, tp trace.TracerProvider) *env {
	t.Helper()
	e := &env{mr: miniredis.RunT(t), metrics: metrics.New(), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}, ready: true}
	client := redis.NewClient(&redis.Options{Addr: e.mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	opts.Observer = e.metrics
	e.repo = storage.New(client, opts)
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(lockedWriter{e.logMu, e.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	h := NewHandler(Config{
		Logger:         log,
		Store:          e.repo,
		Verifier:       webhook.NewVerifier([][]byte{keyCurrent, keyOld}, 5*time.Minute, func() time.Time { return clock }),
		Observer:       e.metrics,
		TracerProvider: tp,
	})
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.admin = httptest.NewServer(NewAdminHandler(AdminConfig{
		Logger:   log,
		Ready:    func() bool { return e.ready },
		Metrics:  e.metrics.Handler(),
		Pprof:    true,
		Observer: e.metrics,
	}))
	t.Cleanup(e.admin.Close)
	return e
}

// payment creates a pending USD 12.34 payment and returns its id.
func (e *env) payment(t *testing.T) string {
	t.Helper()
	req := payments.Request{MerchantID: "m_test", AmountMinor: 1234, Currency: "USD", OrderID: "o-1", IdempotencyKey: "k-" + t.Name()}
	p := payments.New(req, clock)
	if _, _, err := e.repo.Create(context.Background(), p, payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	return p.ID
}

type delivery struct {
	method      string
	contentType string
	id          string
	ts          int64
	key         []byte
	body        string
	sigOverride *string
	tamper      func([]byte) []byte
}

// reply is a finished response, body read and closed.
type reply struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

func (e *env) send(t *testing.T, d delivery) reply {
	t.Helper()
	if d.method == "" {
		d.method = http.MethodPost
	}
	if d.contentType == "" {
		d.contentType = "application/json"
	}
	if d.id == "" {
		d.id = "msg_1"
	}
	if d.ts == 0 {
		d.ts = clock.Unix()
	}
	if d.key == nil {
		d.key = keyCurrent
	}
	body := []byte(d.body)
	sig := webhook.Sign(d.key, d.id, d.ts, body)
	if d.sigOverride != nil {
		sig = *d.sigOverride
	}
	if d.tamper != nil {
		body = d.tamper(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), d.method, e.srv.URL+WebhookPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", d.contentType)
	req.Header.Set(webhook.HeaderID, d.id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(d.ts, 10))
	if sig != "" {
		req.Header.Set(webhook.HeaderSignature, sig)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header, Body: b}
}

func event(typ, paymentID string, extra string) string {
	return `{"type":"` + typ + `","payment_id":"` + paymentID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1234,"currency":"USD"` + extra + `}`
}

func ptr(s string) *string { return &s }

func TestWebhook(t *testing.T) {
	type setup func(t *testing.T, e *env, id string)
	applyFirst := func(body func(id string) string) setup {
		return func(t *testing.T, e *env, id string) {
			if r := e.send(t, delivery{body: body(id)}); r.StatusCode != http.StatusOK {
				t.Fatalf("first delivery = %d %s, want 200", r.StatusCode, r.Body)
			}
		}
	}
	succeeded := func(id string) string { return event("payment.succeeded", id, "") }
	tests := []struct {
		name         string
		setup        setup
		delivery     func(id string) delivery
		wantStatus   int
		wantOutcome  string // metric label and log outcome
		wantBody     string // substring of the response body
		wantSettled  payments.Status
		wantProblem  bool
		wantFields   []string
		wantLogLevel string
	}{
		{name: "valid and fresh", delivery: func(id string) delivery { return delivery{body: succeeded(id)} },
			wantStatus: 200, wantOutcome: "applied", wantBody: `{"outcome":"applied"}`, wantSettled: payments.StatusSucceeded},
		{name: "failure with reason", delivery: func(id string) delivery {
			return delivery{body: event("payment.failed", id, `,"failure_reason":"insufficient_funds"`)}
		}, wantStatus: 200, wantOutcome: "applied", wantSettled: payments.StatusFailed},
		{name: "duplicate", setup: applyFirst(succeeded), delivery: func(id string) delivery { return delivery{body: succeeded(id)} },
			wantStatus: 200, wantOutcome: "duplicate", wantBody: `{"outcome":"duplicate"}`, wantSettled: payments.StatusSucceeded},
		{name: "another event repeating the settlement", setup: applyFirst(succeeded), delivery: func(id string) delivery { return delivery{id: "msg_2", body: succeeded(id)} },
			wantStatus: 200, wantOutcome: "already_settled", wantBody: `{"outcome":"already_settled"}`, wantSettled: payments.StatusSucceeded},
		{name: "conflicting settlement", setup: applyFirst(succeeded), delivery: func(id string) delivery {
			return delivery{id: "msg_2", body: event("payment.failed", id, `,"failure_reason":"late decline"`)}
		}, wantStatus: 409, wantOutcome: "conflict", wantProblem: true, wantSettled: payments.StatusSucceeded, wantLogLevel: "WARN"},
		{name: "same id with a different body", setup: applyFirst(succeeded), delivery: func(id string) delivery {
			return delivery{body: event("payment.succeeded", id, `,"payer":{"phone":"+14155550123"}`)}
		}, wantStatus: 409, wantOutcome: "conflict", wantProblem: true, wantSettled: payments.StatusSucceeded},
		{name: "rotated secret still accepted", delivery: func(id string) delivery { return delivery{key: keyOld, body: succeeded(id)} },
			wantStatus: 200, wantOutcome: "applied", wantSettled: payments.StatusSucceeded},
		{name: "tampered body", delivery: func(id string) delivery {
			return delivery{body: succeeded(id), tamper: func(b []byte) []byte { return bytes.Replace(b, []byte("1234"), []byte("1235"), 1) }}
		}, wantStatus: 401, wantOutcome: "invalid_signature", wantBody: "signature verification failed", wantProblem: true},
		{name: "wrong secret", delivery: func(id string) delivery { return delivery{key: keyOther, body: succeeded(id)} },
			wantStatus: 401, wantOutcome: "invalid_signature", wantProblem: true},
		{name: "missing signature header", delivery: func(id string) delivery { return delivery{body: succeeded(id), sigOverride: ptr("")} },
			wantStatus: 401, wantOutcome: "invalid_signature", wantProblem: true},
		{name: "stale timestamp", delivery: func(id string) delivery { return delivery{ts: clock.Add(-6 * time.Minute).Unix(), body: succeeded(id)} },
			wantStatus: 401, wantOutcome: "stale_timestamp", wantBody: "timestamp outside tolerance", wantProblem: true},
		{name: "future timestamp", delivery: func(id string) delivery { return delivery{ts: clock.Add(6 * time.Minute).Unix(), body: succeeded(id)} },
			wantStatus: 401, wantOutcome: "stale_timestamp", wantProblem: true},
		{name: "oversize body", delivery: func(id string) delivery {
			return delivery{body: event("payment.succeeded", id, `,"pad":"`+strings.Repeat("x", MaxBodyBytes)+`"`)}
		}, wantStatus: 413, wantOutcome: "bad_request", wantProblem: true},
		{name: "wrong method", delivery: func(id string) delivery { return delivery{method: http.MethodPut, body: succeeded(id)} },
			wantStatus: 405, wantOutcome: "bad_request", wantProblem: true},
		{name: "wrong content type", delivery: func(id string) delivery { return delivery{contentType: "text/plain", body: succeeded(id)} },
			wantStatus: 415, wantOutcome: "bad_request", wantProblem: true},
		{name: "json with charset is fine", delivery: func(id string) delivery {
			return delivery{contentType: "application/json; charset=utf-8", body: succeeded(id)}
		}, wantStatus: 200, wantOutcome: "applied", wantSettled: payments.StatusSucceeded},
		{name: "unknown field", delivery: func(id string) delivery { return delivery{body: event("payment.succeeded", id, `,"extra":true`)} },
			wantStatus: 422, wantOutcome: "bad_request", wantProblem: true, wantFields: []string{"extra"}},
		{name: "bad e164", delivery: func(id string) delivery {
			return delivery{body: event("payment.succeeded", id, `,"payer":{"phone":"555-0123"}`)}
		}, wantStatus: 422, wantOutcome: "bad_request", wantProblem: true, wantFields: []string{"payer.phone"}},
		{name: "bad rfc 3339", delivery: func(id string) delivery {
			return delivery{body: strings.Replace(succeeded(id), "2026-11-22T10:00:00Z", "22/11/2026", 1)}
		}, wantStatus: 422, wantOutcome: "bad_request", wantProblem: true, wantFields: []string{"occurred_at"}},
		{name: "malformed json", delivery: func(string) delivery { return delivery{body: `{"type":`} },
			wantStatus: 400, wantOutcome: "bad_request", wantProblem: true},
		{name: "amount disagrees with the payment", delivery: func(id string) delivery {
			return delivery{body: strings.Replace(succeeded(id), "1234", "999", 1)}
		}, wantStatus: 422, wantOutcome: "bad_request", wantProblem: true, wantFields: []string{"amount_minor", "currency"}},
		{name: "unknown payment", delivery: func(string) delivery {
			return delivery{body: succeeded(payments.NewID("m_test", "someone-else", clock))}
		}, wantStatus: 404, wantOutcome: "unknown_payment", wantProblem: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t)
			id := e.payment(t)
			if tt.setup != nil {
				tt.setup(t, e, id)
			}
			before := e.mr.Dump()
			resp := e.send(t, tt.delivery(id))
			body := resp.Body

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body = %s, want it to contain %q", body, tt.wantBody)
			}
			if resp.Header.Get(RequestIDHeader) == "" {
				t.Errorf("response lacks %s", RequestIDHeader)
			}
			if tt.wantProblem {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q, want application/problem+json", ct)
				}
				var p problem
				if err := json.Unmarshal(body, &p); err != nil || p.Status != tt.wantStatus || p.Title == "" || p.Detail == "" {
					t.Errorf("problem body = %s (%v), want status %d with title and detail", body, err, tt.wantStatus)
				}
				var fields []string
				for _, f := range p.Errors {
					fields = append(fields, f.Field)
				}
				if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
					t.Errorf("problem fields mismatch (-want +got):\n%s", diff)
				}
				if after := e.mr.Dump(); after != before {
					t.Errorf("a refused delivery changed Redis:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			}
			wantStatus := tt.wantSettled
			if wantStatus == 0 {
				wantStatus = payments.StatusPending
			}
			stored, err := e.repo.Get(context.Background(), "m_test", id)
			if err != nil {
				t.Fatalf("Get() error = %v", err)
			}
			if stored.Status != wantStatus {
				t.Errorf("stored status = %v, want %v", stored.Status, wantStatus)
			}

			// The setup's own delivery counts as applied too.
			want := 1.0
			if tt.setup != nil && tt.wantOutcome == "applied" {
				want = 2
			}
			if got := metricValue(e.scrape(t), `webhook_events_total{outcome="`+tt.wantOutcome+`"}`); got != want {
				t.Errorf("webhook_events_total{outcome=%q} = %v, want %v", tt.wantOutcome, got, want)
			}
			line := e.lastLog(t, WebhookPath)
			if line["outcome"] != tt.wantOutcome || line["status"] != float64(tt.wantStatus) {
				t.Errorf("access log = %v, want outcome %s status %d", line, tt.wantOutcome, tt.wantStatus)
			}
			if tt.wantLogLevel != "" && line["level"] != tt.wantLogLevel {
				t.Errorf("access log level = %v, want %s", line["level"], tt.wantLogLevel)
			}
		})
	}
}

// scrape reads /metrics as Prometheus would.
func (e *env) scrape(t *testing.T) string {
	t.Helper()
	resp, err := e.admin.Client().Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// metricValue finds one sample, such as `webhook_events_total{outcome="applied"}`,
// in an exposition; a missing sample is -1.
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// lastLog returns the last access-log line for a route.
func (e *env) lastLog(t *testing.T, route string) map[string]any {
	t.Helper()
	e.logMu.Lock()
	defer e.logMu.Unlock()
	var last map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["route"] == route {
			last = m
		}
	}
	if last == nil {
		t.Fatalf("no access-log line for %s", route)
	}
	for _, k := range []string{"method", "route", "status", "latency_ms", "bytes", "request_id"} {
		if _, ok := last[k]; !ok {
			t.Errorf("access log %v lacks %q", last, k)
		}
	}
	return last
}

func TestWebhookConcurrentDeliveriesApplyOnce(t *testing.T) {
	e := start(t)
	id := e.payment(t)
	const deliveries = 50
	var wg sync.WaitGroup
	bodies := make([]string, deliveries)
	codes := make([]int, deliveries)
	for i := range deliveries {
		wg.Go(func() {
			r := e.send(t, delivery{body: event("payment.succeeded", id, "")})
			codes[i], bodies[i] = r.StatusCode, string(r.Body)
		})
	}
	wg.Wait()
	applied := 0
	for i := range deliveries {
		if codes[i] != http.StatusOK {
			t.Fatalf("delivery %d = %d %s, want 200", i, codes[i], bodies[i])
		}
		if strings.Contains(bodies[i], `"applied"`) {
			applied++
		}
	}
	if applied != 1 {
		t.Errorf("applied answers = %d, want exactly 1", applied)
	}
	scraped := e.scrape(t)
	if got := metricValue(scraped, `webhook_events_total{outcome="applied"}`); got != 1 {
		t.Errorf("applied counter = %v, want 1", got)
	}
	if got := metricValue(scraped, `webhook_events_total{outcome="duplicate"}`); got != deliveries-1 {
		t.Errorf("duplicate counter = %v, want %d", got, deliveries-1)
	}
}

func TestProbes(t *testing.T) {
	e := start(t)
	tests := []struct {
		path  string
		ready bool
		want  int
	}{
		{"/healthz", true, 200},
		{"/healthz", false, 200}, // liveness never depends on Redis
		{"/readyz", true, 200},
		{"/readyz", false, 503},
	}
	for _, tt := range tests {
		t.Run(tt.path+"/ready="+strconv.FormatBool(tt.ready), func(t *testing.T) {
			e.ready = tt.ready
			resp, err := e.admin.Client().Get(e.admin.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
	e.ready = true
}

// TestPortsSplit checks that the public port serves the webhook only and
// the admin port everything operational, so an ingress in front of the
// public port exposes no metrics, probes or profiles.
func TestPortsSplit(t *testing.T) {
	e := start(t)
	tests := []struct {
		name string
		srv  *httptest.Server
		path string
		want int
	}{
		{"public/metrics", e.srv, "/metrics", http.StatusNotFound},
		{"public/healthz", e.srv, "/healthz", http.StatusNotFound},
		{"public/readyz", e.srv, "/readyz", http.StatusNotFound},
		{"public/pprof", e.srv, "/debug/pprof/", http.StatusNotFound},
		{"admin/metrics", e.admin, "/metrics", http.StatusOK},
		{"admin/pprof", e.admin, "/debug/pprof/", http.StatusOK},
		{"admin/pprof-heap", e.admin, "/debug/pprof/heap", http.StatusOK},
		{"admin/webhook", e.admin, WebhookPath, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.srv.Client().Get(tt.srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
	if strings.Contains(e.scrape(t), "/debug/pprof/heap") {
		t.Errorf("/metrics carries a raw pprof path as a label value")
	}

	off := httptest.NewServer(NewAdminHandler(AdminConfig{Logger: slog.New(slog.DiscardHandler), Metrics: e.metrics.Handler(), Observer: e.metrics}))
	defer off.Close()
	resp, err := off.Client().Get(off.URL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ with pprof off = %d, want 404", resp.StatusCode)
	}
}

func TestWebhookStoreOutage(t *testing.T) {
	e := start(t)
	id := e.payment(t)
	e.mr.Close()
	resp := e.send(t, delivery{body: event("payment.succeeded", id, "")})
	body := resp.Body
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("delivery with Redis down = %d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := metricValue(e.scrape(t), `webhook_events_total{outcome="unavailable"}`); got != 1 {
		t.Errorf("unavailable counter = %v, want 1", got)
	}
}

// TestWebhookReplicaAckShortfall requires a replica on miniredis, which has
// none: the settlement is written on the primary but not acknowledged, so the
// provider must redeliver, and the redelivery is a duplicate that waits again.
func TestWebhookReplicaAckShortfall(t *testing.T) {
	e := startWith(t, storage.Options{IdempotencyTTL: time.Hour, MinReplicaAcks: 1, AckTimeout: time.Millisecond})
	// The payment is created without acknowledgements, on the same store.
	plain := redis.NewClient(&redis.Options{Addr: e.mr.Addr()})
	t.Cleanup(func() { plain.Close() })
	req := payments.Request{MerchantID: "m_test", AmountMinor: 1234, Currency: "USD", OrderID: "o-1", IdempotencyKey: "k-acks"}
	p := payments.New(req, clock)
	if _, _, err := storage.New(plain, storage.Options{IdempotencyTTL: time.Hour}).Create(context.Background(), p, payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}

	for i, attempt := range []string{"delivery", "redelivery"} {
		resp := e.send(t, delivery{body: event("payment.succeeded", p.ID, "")})
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s = %d (Retry-After %q) %s, want 503 with Retry-After", attempt, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Body)
		}
		exposition := e.scrape(t)
		if got := metricValue(exposition, `webhook_events_total{outcome="unavailable"}`); got != float64(i+1) {
			t.Errorf("after the %s: unavailable counter = %v, want %d", attempt, got, i+1)
		}
		if got := metricValue(exposition, "redis_replica_acks_shortfall_total"); got != float64(i+1) {
			t.Errorf("after the %s: shortfall counter = %v, want %d", attempt, got, i+1)
		}
	}
	if got := e.mr.HGet(storage.PaymentKey(payments.HashTag("m_test", "k-acks"), p.ID), "st"); got != "2" {
		t.Errorf("stored status = %q, want 2 (SUCCEEDED): the primary took the settlement", got)
	}
}

// failingStore fails every event with an unexpected error.
type failingStore struct{}

func (failingStore) ApplyEvent(context.Context, string, string, payments.Settlement) (payments.SettleOutcome, error) {
	return "", io.ErrUnexpectedEOF
}

func TestWebhookUnexpectedStoreError(t *testing.T) {
	m := metrics.New()
	h := NewHandler(Config{
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Store:    failingStore{},
		Verifier: webhook.NewVerifier([][]byte{keyCurrent}, time.Minute, func() time.Time { return clock }),
		Observer: m,
	})
	body := []byte(event("payment.succeeded", payments.NewID("m_test", "k", clock), ""))
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, WebhookPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderID, "m")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(clock.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(keyCurrent, "m", clock.Unix(), body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "EOF") {
		t.Errorf("unexpected store error = %d %s, want 500 without internals", rec.Code, rec.Body.String())
	}
}

func TestRequestIDEchoedAndUnknownRoutesShareALabel(t *testing.T) {
	e := start(t)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, e.srv.URL+"/wp-login.php", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(RequestIDHeader, "trace-42")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); got != "trace-42" {
		t.Errorf("%s = %q, want trace-42 echoed", RequestIDHeader, got)
	}
	if line := e.lastLog(t, "unmatched"); line["request_id"] != "trace-42" || line["status"] != float64(404) {
		t.Errorf("access log = %v, want request_id trace-42 and status 404", line)
	}
	if strings.Contains(e.scrape(t), "wp-login") {
		t.Errorf("/metrics carries a raw unknown path as a label value")
	}
}
