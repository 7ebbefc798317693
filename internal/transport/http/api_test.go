package httptransport

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/ratelimit"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	grpctransport "github.com/payments-svc/payments-svc/internal/transport/grpc"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// apiEnv is the JSON API in front of the real gRPC server, interceptors and
// all, on miniredis: the same assembly as the app's, without the network.
type apiEnv struct {
	srv  *httptest.Server
	grpc paymentsv1.PaymentServiceClient // the same server, as a gRPC client
	mr   *miniredis.Miniredis
	logs *bytes.Buffer
	mu   *sync.Mutex
}

// apiKeyB is a second merchant's key, for tenancy cases.
var apiKeyB = func() string {
	k, err := auth.NewKey("test")
	if err != nil {
		panic(err)
	}
	return k
}()

type apiOpts struct {
	limits *ratelimit.Config // nil: unlimited
	store  grpctransport.Store
	// tp, if set, traces the HTTP handler, the gateway's gRPC client and
	// the gRPC server into it, as the app wires them.
	tp trace.TracerProvider
}

func startAPI(t *testing.T, o apiOpts) *apiEnv {
	t.Helper()
	e := &apiEnv{mr: miniredis.RunT(t), logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	lis := bufconn.Listen(1 << 20)
	rc := redis.NewClient(&redis.Options{Addr: e.mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	store := o.store
	if store == nil {
		store = storage.New(rc, storage.Options{IdempotencyTTL: time.Hour})
	}
	var limiter grpctransport.Limiter
	if o.limits != nil {
		limiter = ratelimit.New(rc, *o.limits)
	}
	ring, err := auth.ParseKeys([]byte(auth.Line(auth.DevMerchant, auth.DevKey) + "\n" + auth.Line("m_b", apiKeyB)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(lockedWriter{e.mu, e.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	var serverStats stats.Handler
	dialOpts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if o.tp != nil {
		serverStats = otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.tp), otelgrpc.WithPropagators(telemetry.Propagator()))
		dialOpts = append(dialOpts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(o.tp), otelgrpc.WithPropagators(telemetry.Propagator()))))
	}
	gs := grpctransport.NewServer(grpctransport.ServerConfig{
		StatsHandler:  serverStats,
		Logger:        log,
		Service:       grpctransport.NewService(store, nil, limiter, func() time.Time { return clock }),
		Health:        health.NewServer(),
		MaxRecvBytes:  64 << 10,
		Authenticator: auth.NewAuthenticator(auth.Static{Ring: ring}),
	})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	api, err := NewAPI(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(NewHandler(Config{Logger: log, API: api, TracerProvider: o.tp}))
	t.Cleanup(e.srv.Close)
	e.grpc = paymentsv1.NewPaymentServiceClient(conn)
	return e
}

// apiCall is one HTTP request to the JSON API.
type apiCall struct {
	method  string
	path    string
	body    string
	headers map[string]string // nil: JSON content type and the dev key
	key     *string           // Idempotency-Key; nil sends none
}

type apiReply struct {
	status int
	header http.Header
	body   []byte
}

func (e *apiEnv) do(t *testing.T, c apiCall) apiReply {
	t.Helper()
	return send(t, e, c).reply
}

// problemOf decodes a problem+json reply.
func problemOf(t *testing.T, r apiReply) problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	return p
}

func ptrTo(s string) *string { return &s }

const createBody = `{"amountMinor":"1234","currency":"USD","orderId":"order-7","metadata":{"cart":"3"}}`

// TestAPIIdempotencyKeyDraft walks the IETF draft's rows: each request is
// sent in order against one server, so the rows build on each other.
func TestAPIIdempotencyKeyDraft(t *testing.T) {
	e := startAPI(t, apiOpts{})
	var firstBody []byte
	var firstID string
	steps := []struct {
		name         string
		call         apiCall
		wantStatus   int
		wantType     string // problem type slug; "" for success
		wantReplayed bool
		wantKeys     int // Redis keys afterwards
	}{
		{"missing key", apiCall{method: "POST", path: "/v1/payments", body: createBody}, 400, "idempotency-key-missing", false, 0},
		{"empty key", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("")}, 400, "idempotency-key-invalid", false, 0},
		{"malformed structured string", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo(`"abc`)}, 400, "idempotency-key-invalid", false, 0},
		{"body key differs", apiCall{method: "POST", path: "/v1/payments", body: `{"amountMinor":"1234","currency":"USD","orderId":"order-7","idempotencyKey":"other"}`, key: ptrTo("key-1")}, 400, "idempotency-key-conflict", false, 0},
		{"create", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo(`"key-1"`)}, 201, "", false, 2},
		{"replay, bare header", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("key-1")}, 201, "", true, 2},
		{"replay, same key in the body too", apiCall{method: "POST", path: "/v1/payments", body: `{"amountMinor":"1234","currency":"USD","orderId":"order-7","metadata":{"cart":"3"},"idempotency_key":"key-1"}`, key: ptrTo("key-1")}, 201, "", true, 2},
		{"reuse with another payload", apiCall{method: "POST", path: "/v1/payments", body: `{"amountMinor":"999","currency":"USD","orderId":"order-7"}`, key: ptrTo("key-1")}, 422, "idempotency-key-reused", false, 2},
		{"unknown field", apiCall{method: "POST", path: "/v1/payments", body: `{"amountMinor":"1","currency":"USD","orderId":"o","extra":true}`, key: ptrTo("key-2")}, 400, "invalid-json", false, 2},
		{"not json", apiCall{method: "POST", path: "/v1/payments", body: `amount=1`, key: ptrTo("key-2")}, 400, "invalid-json", false, 2},
		{"validation", apiCall{method: "POST", path: "/v1/payments", body: `{"amountMinor":"-1","currency":"usd"}`, key: ptrTo("key-2")}, 400, "invalid-argument", false, 2},
		{"wrong content type", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("key-2"), headers: map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + auth.DevKey}}, 415, "unsupported-media-type", false, 2},
		{"body too large", apiCall{method: "POST", path: "/v1/payments", body: `{"orderId":"` + strings.Repeat("x", MaxAPIBodyBytes) + `"}`, key: ptrTo("key-2")}, 413, "body-too-large", false, 2},
		{"no credentials", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("key-2"), headers: map[string]string{"Content-Type": "application/json"}}, 401, "unauthenticated", false, 2},
		{"wrong method", apiCall{method: "PUT", path: "/v1/payments", body: createBody, key: ptrTo("key-2")}, 405, "method-not-allowed", false, 2},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := e.do(t, s.call)
			if r.status != s.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", r.status, s.wantStatus, r.body)
			}
			if s.wantType != "" {
				p := problemOf(t, r)
				if p.Type != ProblemBase+s.wantType || p.Status != s.wantStatus || p.Title == "" || p.Detail == "" {
					t.Errorf("problem = %+v, want type %s%s, status %d, a title and a detail", p, ProblemBase, s.wantType, s.wantStatus)
				}
			} else {
				if firstBody == nil {
					firstBody = r.body
					var resp struct{ PaymentID string }
					if err := json.Unmarshal(r.body, &resp); err != nil {
						t.Fatal(err)
					}
					firstID = resp.PaymentID
				}
				if !bytes.Equal(r.body, firstBody) {
					t.Errorf("body = %s, want the original %s", r.body, firstBody)
				}
				if got := r.header.Get("Location"); got != "/v1/payments/"+firstID {
					t.Errorf("Location = %q, want /v1/payments/%s", got, firstID)
				}
			}
			if got := r.header.Get(ReplayedHeader) == "true"; got != s.wantReplayed {
				t.Errorf("%s = %q, want replayed %v", ReplayedHeader, r.header.Get(ReplayedHeader), s.wantReplayed)
			}
			if got := len(e.mr.Keys()); got != s.wantKeys {
				t.Errorf("Redis holds %d keys, want %d: %v", got, s.wantKeys, e.mr.Keys())
			}
		})
	}

	t.Run("get", func(t *testing.T) {
		r := e.do(t, apiCall{method: "GET", path: "/v1/payments/" + firstID})
		if r.status != 200 {
			t.Fatalf("GET = %d %s, want 200", r.status, r.body)
		}
		var got map[string]any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		// protojson: lowerCamelCase names, int64 as a string.
		if got["amountMinor"] != "1234" || got["orderId"] != "order-7" || got["idempotencyKey"] != "key-1" || got["status"] != "PAYMENT_STATUS_PENDING" {
			t.Errorf("GET body = %s, want protojson field names and values", r.body)
		}
	})
}

// TestAPIErrors maps each gRPC error of the table to its HTTP status,
// problem type and headers.
func TestAPIErrors(t *testing.T) {
	e := startAPI(t, apiOpts{limits: &ratelimit.Config{
		Default: ratelimit.Limits{Create: &ratelimit.Limit{PerSecond: 1, Burst: 1}, Get: &ratelimit.Limit{}},
	}})
	e.mr.SetTime(clock)
	created := e.do(t, apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("k1")})
	if created.status != 201 {
		t.Fatalf("create = %d %s", created.status, created.body)
	}
	var pay struct{ PaymentID string }
	if err := json.Unmarshal(created.body, &pay); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		call       apiCall
		wantStatus int
		wantType   string
		wantRetry  bool
		wantFields []string
	}{
		{"malformed id", apiCall{method: "GET", path: "/v1/payments/pay_nope"}, 400, "invalid-argument", false, []string{"payment_id"}},
		{"unknown id", apiCall{method: "GET", path: "/v1/payments/" + strings.Replace(pay.PaymentID, pay.PaymentID[4:6], "00", 1)}, 404, "not-found", false, nil},
		{"other merchant's payment", apiCall{method: "GET", path: "/v1/payments/" + pay.PaymentID, headers: map[string]string{"Authorization": "Bearer " + apiKeyB}}, 404, "not-found", false, nil},
		{"bad key", apiCall{method: "GET", path: "/v1/payments/" + pay.PaymentID, headers: map[string]string{"Authorization": "Bearer pk_test_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}, 401, "unauthenticated", false, nil},
		{"over quota", apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("k2")}, 429, "rate-limited", true, nil},
		{"unknown route", apiCall{method: "GET", path: "/v1/payments/a/b"}, 404, "not-found", false, nil},
		{"delete a payment", apiCall{method: "DELETE", path: "/v1/payments/" + pay.PaymentID}, 405, "method-not-allowed", false, nil},
		{"validation fields", apiCall{method: "POST", path: "/v1/payments", body: `{"amountMinor":"0","currency":"XTS","orderId":""}`, key: ptrTo("k3")}, 400, "invalid-argument", false, []string{"amount_minor", "currency", "order_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.call)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tt.wantStatus, r.body)
			}
			p := problemOf(t, r)
			if p.Type != ProblemBase+tt.wantType {
				t.Errorf("type = %q, want %s%s", p.Type, ProblemBase, tt.wantType)
			}
			if got := r.header.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After = %q, want present: %v", r.header.Get("Retry-After"), tt.wantRetry)
			}
			var fields []string
			for _, v := range p.Errors {
				if v.Reason == "" || v.Detail == "" {
					t.Errorf("violation %+v lacks a reason or detail", v)
				}
				fields = append(fields, v.Field)
			}
			if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
				t.Errorf("errors fields (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAPIUnavailable maps a store outage to 503 with Retry-After.
func TestAPIUnavailable(t *testing.T) {
	e := startAPI(t, apiOpts{})
	e.mr.Close()
	r := e.do(t, apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("k1")})
	if r.status != 503 || r.header.Get("Retry-After") != "1" || problemOf(t, r).Type != ProblemBase+"unavailable" {
		t.Errorf("create with Redis down = %d (Retry-After %q) %s, want 503, Retry-After 1, type unavailable", r.status, r.header.Get("Retry-After"), r.body)
	}
}

// TestAPICrossProtocol sends one key over HTTP and then gRPC, and another
// the other way round: each is one payment with identical content.
func TestAPICrossProtocol(t *testing.T) {
	e := startAPI(t, apiOpts{})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+auth.DevKey)
	grpcReq := &paymentsv1.RequestPaymentRequest{AmountMinor: 1234, Currency: "USD", OrderId: "order-7", IdempotencyKey: "", Metadata: map[string]string{"cart": "3"}}
	for _, first := range []string{"http", "grpc"} {
		t.Run(first+" first", func(t *testing.T) {
			key := "cross-" + first
			grpcReq.IdempotencyKey = key
			var viaHTTP, viaGRPC *paymentsv1.RequestPaymentResponse
			var grpcHdr metadata.MD
			httpCall := func() apiReply {
				r := e.do(t, apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo(key)})
				if r.status != 201 {
					t.Fatalf("HTTP create = %d %s", r.status, r.body)
				}
				viaHTTP = &paymentsv1.RequestPaymentResponse{}
				if err := protojson.Unmarshal(r.body, viaHTTP); err != nil {
					t.Fatal(err)
				}
				return r
			}
			grpcCall := func() {
				var err error
				viaGRPC, err = e.grpc.RequestPayment(ctx, grpcReq, grpc.Header(&grpcHdr))
				if err != nil {
					t.Fatalf("gRPC create: %v", err)
				}
			}
			var r apiReply
			if first == "http" {
				r = httpCall()
				grpcCall()
				if got := grpcHdr.Get("idempotent-replayed"); len(got) != 1 {
					t.Errorf("gRPC after HTTP: replayed header %v, want a replay", got)
				}
			} else {
				grpcCall()
				r = httpCall()
				if r.header.Get(ReplayedHeader) != "true" {
					t.Errorf("HTTP after gRPC: %s = %q, want true", ReplayedHeader, r.header.Get(ReplayedHeader))
				}
			}
			if diff := cmp.Diff(viaGRPC, viaHTTP, protocmp.Transform()); diff != "" {
				t.Errorf("HTTP and gRPC answers differ (-grpc +http):\n%s", diff)
			}
		})
	}
	if got := len(e.mr.Keys()); got != 4 {
		t.Errorf("Redis holds %d keys, want 4: two payments and their records", got)
	}
	_, err := e.grpc.RequestPayment(ctx, &paymentsv1.RequestPaymentRequest{AmountMinor: 1, Currency: "USD", OrderId: "o", IdempotencyKey: "cross-http"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("gRPC reuse of an HTTP key with another payload = %v, want FailedPrecondition", err)
	}
}

func TestParseIdempotencyKey(t *testing.T) {
	tests := []struct {
		in     []string
		want   string
		wantOK bool
	}{
		{[]string{`"abc"`}, "abc", true},
		{[]string{`abc`}, "abc", true},
		{[]string{` "a\"b\\c" `}, `a"b\c`, true},
		{[]string{`""`}, "", false},
		{[]string{``}, "", false},
		{[]string{`"a"b"`}, "", false},
		{[]string{`"a\x"`}, "", false},
		{[]string{`"a\"`}, "", false},
		{[]string{"a", "b"}, "", false},
		{[]string{`"abc`}, "", false},
		{[]string{`a"b`}, "", false},
	}
	for _, tt := range tests {
		got, ok := parseIdempotencyKey(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseIdempotencyKey(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestAPIRequestID checks that the caller's X-Request-Id is echoed and that
// the HTTP access line and the gRPC call line behind it carry the same id.
func TestAPIRequestID(t *testing.T) {
	e := startAPI(t, apiOpts{})
	r := e.do(t, apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("rid-1"), headers: map[string]string{
		"Content-Type": "application/json", "Authorization": "Bearer " + auth.DevKey, RequestIDHeader: "trace-42",
	}})
	if r.status != 201 || r.header.Get(RequestIDHeader) != "trace-42" {
		t.Fatalf("create = %d, %s %q; want 201 and trace-42 echoed", r.status, RequestIDHeader, r.header.Get(RequestIDHeader))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var msgs []string
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if line["request_id"] == "trace-42" {
			msgs = append(msgs, line["msg"].(string))
			if line["msg"] == "http" && (line["route"] != "/v1/payments" || line["outcome"] != "created" || line["payment_id"] == nil) {
				t.Errorf("access line = %v, want route /v1/payments, outcome created and the payment_id", line)
			}
			if line["msg"] == "rpc" && line["merchant"] != auth.DevMerchant {
				t.Errorf("rpc line = %v, want merchant %s", line, auth.DevMerchant)
			}
		}
	}
	if diff := cmp.Diff([]string{"rpc", "http"}, msgs); diff != "" {
		t.Errorf("log lines with the request id (-want +got):\n%s", diff)
	}
}
