package grpctransport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/ratelimit"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

var fixedNow = time.Date(2026, 11, 22, 12, 0, 0, 987654321, time.UTC)

type env struct {
	lis    *bufconn.Listener
	conn   *grpc.ClientConn
	client paymentsv1.PaymentServiceClient
	health healthpb.HealthClient
	mr     *miniredis.Miniredis
	logs   *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log records written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type readyFunc func() bool

func (f readyFunc) Ready() bool { return f() }

// start serves the real interceptor chain over bufconn. A nil store means the
// real Redis repository on miniredis.
// Two merchants, A and B, with a key each; the env's client calls as A.
var (
	keyA = mustKey("live")
	keyB = mustKey("live")
)

func mustKey(env string) string {
	k, err := auth.NewKey(env)
	if err != nil {
		panic(err)
	}
	return k
}

func testKeys() auth.Static {
	ring, err := auth.ParseKeys([]byte(auth.Line("m_a", keyA) + "\n" + auth.Line("m_b", keyB)))
	if err != nil {
		panic(err)
	}
	return auth.Static{Ring: ring}
}

func start(t *testing.T, store Store, ready Readiness) *env {
	t.Helper()
	return startWith(t, store, ready, true)
}

func startWith(t *testing.T, store Store, ready Readiness, reflection bool) *env {
	t.Helper()
	return startOpts(t, opts{store: store, ready: ready, reflection: reflection})
}

type opts struct {
	store      Store
	ready      Readiness
	reflection bool
	limits     *ratelimit.Config // nil: unlimited
	// tp, if set, traces the server (otelgrpc) and the Redis client
	// (redisotel) into it, and the logger stamps trace ids.
	tp trace.TracerProvider
}

func startOpts(t *testing.T, o opts) *env {
	t.Helper()
	store, ready, reflection := o.store, o.ready, o.reflection
	e := &env{logs: &syncBuffer{}}
	if store == nil {
		e.mr = miniredis.RunT(t)
		rc := redis.NewClient(&redis.Options{Addr: e.mr.Addr(), MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		if o.tp != nil {
			if err := storage.InstrumentTracing(rc, o.tp); err != nil {
				t.Fatal(err)
			}
		}
		store = storage.New(rc, storage.Options{IdempotencyTTL: time.Hour})
	}
	var limiter Limiter
	if o.limits != nil {
		rc := redis.NewClient(&redis.Options{Addr: e.mr.Addr(), MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		limiter = ratelimit.New(rc, *o.limits)
	}
	hs := health.NewServer()
	var logh slog.Handler = slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	var sh stats.Handler
	if o.tp != nil {
		logh = telemetry.LogHandler(logh)
		sh = otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.tp), otelgrpc.WithPropagators(telemetry.Propagator()))
	}
	srv := NewServer(ServerConfig{
		StatsHandler:  sh,
		Logger:        slog.New(logh),
		Service:       NewService(store, ready, limiter, func() time.Time { return fixedNow }),
		Health:        hs,
		Reflection:    reflection,
		MaxRecvBytes:  64 << 10,
		Authenticator: auth.NewAuthenticator(testKeys()),
	})
	e.lis = bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(e.lis) }()
	t.Cleanup(srv.Stop)

	conn := e.dial(t, grpc.WithPerRPCCredentials(auth.Bearer(keyA)))
	e.client = paymentsv1.NewPaymentServiceClient(conn)
	e.health = healthpb.NewHealthClient(conn)
	e.conn = conn
	return e
}

// dial opens another connection to the server.
func (e *env) dial(t *testing.T, extra ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///bufnet", append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, extra...)...)
	if err != nil {
		t.Fatalf("grpc.NewClient() error = %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// as returns a client that calls with the given API key.
func (e *env) as(t *testing.T, key string) paymentsv1.PaymentServiceClient {
	t.Helper()
	return paymentsv1.NewPaymentServiceClient(e.dial(t, grpc.WithPerRPCCredentials(auth.Bearer(key))))
}

func validReq(key string) *paymentsv1.RequestPaymentRequest {
	return &paymentsv1.RequestPaymentRequest{
		AmountMinor:    1234,
		Currency:       "USD",
		OrderId:        "order-7",
		IdempotencyKey: key,
		Metadata:       map[string]string{"secret-ish": "do-not-log-me"},
	}
}

func TestRequestPaymentCreatesThenReplays(t *testing.T) {
	e := start(t, nil, nil)
	ctx := context.Background()

	var hdr1, hdr2 metadata.MD
	first, err := e.client.RequestPayment(ctx, validReq("key-1"), grpc.Header(&hdr1))
	if err != nil {
		t.Fatalf("RequestPayment() error = %v", err)
	}
	want := &paymentsv1.RequestPaymentResponse{
		PaymentId:      first.GetPaymentId(),
		Status:         paymentsv1.PaymentStatus_PAYMENT_STATUS_PENDING,
		Message:        "payment of USD 12.34 for order order-7 accepted; awaiting provider confirmation",
		IdempotencyKey: "key-1",
		CreatedAt:      timestamppb.New(fixedNow),
	}
	if diff := cmp.Diff(want, first, protocmp.Transform()); diff != "" {
		t.Errorf("first response mismatch (-want +got):\n%s", diff)
	}
	if got := hdr1.Get(ReplayedHeader); len(got) != 0 {
		t.Errorf("first response header %s = %v, want absent", ReplayedHeader, got)
	}

	second, err := e.client.RequestPayment(ctx, validReq("key-1"), grpc.Header(&hdr2))
	if err != nil {
		t.Fatalf("replay RequestPayment() error = %v", err)
	}
	if diff := cmp.Diff(first, second, protocmp.Transform()); diff != "" {
		t.Errorf("replay response differs from the original (-want +got):\n%s", diff)
	}
	if got := hdr2.Get(ReplayedHeader); len(got) != 1 || got[0] != "true" {
		t.Errorf("replay header %s = %v, want [true]", ReplayedHeader, got)
	}

	got, err := e.client.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: first.GetPaymentId()})
	if err != nil {
		t.Fatalf("GetPayment() error = %v", err)
	}
	wantGet := &paymentsv1.GetPaymentResponse{
		PaymentId:      first.GetPaymentId(),
		Status:         paymentsv1.PaymentStatus_PAYMENT_STATUS_PENDING,
		AmountMinor:    1234,
		Currency:       "USD",
		OrderId:        "order-7",
		IdempotencyKey: "key-1",
		CreatedAt:      timestamppb.New(fixedNow),
		Message:        want.GetMessage(),
	}
	if diff := cmp.Diff(wantGet, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetPayment() mismatch (-want +got):\n%s", diff)
	}
}

func TestRequestPaymentKeyReuseIsRejected(t *testing.T) {
	e := start(t, nil, nil)
	ctx := context.Background()
	if _, err := e.client.RequestPayment(ctx, validReq("key-1")); err != nil {
		t.Fatalf("RequestPayment() error = %v", err)
	}
	keys := e.mr.Keys()

	changed := validReq("key-1")
	changed.AmountMinor = 999
	_, err := e.client.RequestPayment(ctx, changed)
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("reuse code = %v, want FailedPrecondition (err %v)", st.Code(), err)
	}
	want := []any{&errdetails.ErrorInfo{Reason: "IDEMPOTENCY_KEY_REUSED", Domain: "payments.v1"}}
	if diff := cmp.Diff(want, st.Details(), protocmp.Transform()); diff != "" {
		t.Errorf("reuse details mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(keys, e.mr.Keys()); diff != "" {
		t.Errorf("a rejected reuse changed Redis keys (-before +after):\n%s", diff)
	}
}

func TestRequestPaymentValidation(t *testing.T) {
	tests := []struct {
		name       string
		req        *paymentsv1.RequestPaymentRequest
		wantFields []string
	}{
		{name: "empty request", req: &paymentsv1.RequestPaymentRequest{}, wantFields: []string{"amount_minor", "currency", "order_id", "idempotency_key"}},
		{name: "lower-case currency and negative amount", req: func() *paymentsv1.RequestPaymentRequest {
			r := validReq("k")
			r.Currency, r.AmountMinor = "usd", -1
			return r
		}(), wantFields: []string{"amount_minor", "currency"}},
		{name: "test currency", req: func() *paymentsv1.RequestPaymentRequest { r := validReq("k"); r.Currency = "XTS"; return r }(), wantFields: []string{"currency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, nil, nil)
			_, err := e.client.RequestPayment(context.Background(), tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code = %v, want InvalidArgument (err %v)", st.Code(), err)
			}
			var got []string
			for _, d := range st.Details() {
				br, ok := d.(*errdetails.BadRequest)
				if !ok {
					t.Fatalf("detail %T, want *errdetails.BadRequest", d)
				}
				for _, v := range br.GetFieldViolations() {
					if v.GetReason() == "" || v.GetDescription() == "" {
						t.Errorf("violation %v lacks a reason or description", v)
					}
					got = append(got, v.GetField())
				}
			}
			if diff := cmp.Diff(tt.wantFields, got); diff != "" {
				t.Errorf("violated fields mismatch (-want +got):\n%s", diff)
			}
			if keys := e.mr.Keys(); len(keys) != 0 {
				t.Errorf("a rejected request wrote %v, want nothing", keys)
			}
		})
	}
}

func TestValidationFailureDoesNotBurnKey(t *testing.T) {
	e := start(t, nil, nil)
	bad := validReq("key-1")
	bad.Currency = "ABC"
	if _, err := e.client.RequestPayment(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad request code = %v, want InvalidArgument", status.Code(err))
	}
	var hdr metadata.MD
	if _, err := e.client.RequestPayment(context.Background(), validReq("key-1"), grpc.Header(&hdr)); err != nil {
		t.Fatalf("valid request after a rejected one: error = %v, want success", err)
	}
	if got := hdr.Get(ReplayedHeader); len(got) != 0 {
		t.Errorf("valid request after a rejected one was a replay (%v), want a fresh payment", got)
	}
}

func TestGetPaymentErrors(t *testing.T) {
	e := start(t, nil, nil)
	tests := []struct {
		name     string
		id       string
		wantCode codes.Code
	}{
		{name: "missing id", id: "", wantCode: codes.InvalidArgument},
		{name: "malformed id", id: "pay_nope", wantCode: codes.InvalidArgument},
		{name: "unknown id", id: payments.NewID("m_test", "nobody", fixedNow), wantCode: codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.GetPayment(context.Background(), &paymentsv1.GetPaymentRequest{PaymentId: tt.id})
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("GetPayment(%q) code = %v, want %v (err %v)", tt.id, got, tt.wantCode, err)
			}
			if tt.wantCode == codes.NotFound {
				lines := e.logs.lines(t)
				if last := lines[len(lines)-1]; last["payment_id"] != tt.id || last["code"] != "NotFound" {
					t.Errorf("log line = %v, want payment_id %s and code NotFound", last, tt.id)
				}
			}
		})
	}
}

// stubStore fails or panics as told, to drive every row of the error table.
type stubStore struct {
	err   error
	panic bool
	block bool
}

func (s stubStore) Create(ctx context.Context, _ payments.Payment, _ string) (payments.Receipt, payments.Outcome, error) {
	if s.panic {
		panic("boom: internal detail")
	}
	if s.block {
		<-ctx.Done()
		return payments.Receipt{}, "", ctx.Err()
	}
	return payments.Receipt{}, "", s.err
}

func (s stubStore) Get(ctx context.Context, _, _ string) (payments.Payment, error) {
	_, _, err := s.Create(ctx, payments.Payment{}, "")
	return payments.Payment{}, err
}

func (s stubStore) Replay(ctx context.Context, _ payments.Request, _ string) (payments.Receipt, payments.Outcome, error) {
	return s.Create(ctx, payments.Payment{}, "")
}

func TestErrorModel(t *testing.T) {
	tests := []struct {
		name        string
		store       stubStore
		timeout     time.Duration
		wantCode    codes.Code
		wantMessage string
		wantRetry   bool
	}{
		{name: "store unavailable", store: stubStore{err: errors.Join(payments.ErrUnavailable, errors.New("dial tcp: connection refused"))}, wantCode: codes.Unavailable, wantMessage: "retry with the same idempotency key", wantRetry: true},
		{name: "store times out", store: stubStore{block: true}, timeout: 50 * time.Millisecond, wantCode: codes.DeadlineExceeded},
		{name: "store reports cancellation", store: stubStore{err: context.Canceled}, wantCode: codes.Canceled},
		{name: "unexpected error", store: stubStore{err: errors.New("redis: ERR something odd at 10.0.0.7")}, wantCode: codes.Internal, wantMessage: "internal error"},
		{name: "panic", store: stubStore{panic: true}, wantCode: codes.Internal, wantMessage: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, tt.store, nil)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, err := e.client.RequestPayment(ctx, validReq("k"))
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Fatalf("code = %v, want %v (err %v)", st.Code(), tt.wantCode, err)
			}
			if !strings.Contains(st.Message(), tt.wantMessage) {
				t.Errorf("message = %q, want it to contain %q", st.Message(), tt.wantMessage)
			}
			for _, leak := range []string{"boom", "10.0.0.7", "dial tcp"} {
				if strings.Contains(st.Message(), leak) {
					t.Errorf("message = %q leaks %q", st.Message(), leak)
				}
			}
			var gotRetry bool
			for _, d := range st.Details() {
				if _, ok := d.(*errdetails.RetryInfo); ok {
					gotRetry = true
				}
			}
			if gotRetry != tt.wantRetry {
				t.Errorf("RetryInfo present = %v, want %v", gotRetry, tt.wantRetry)
			}
			// GetPayment maps the same way.
			_, err = e.client.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: payments.NewID("m_test", "k", fixedNow)})
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("GetPayment code = %v, want %v", got, tt.wantCode)
			}
		})
	}
}

func TestStoreOutageIsUnavailable(t *testing.T) {
	e := start(t, nil, nil)
	e.mr.Close()
	_, err := e.client.RequestPayment(context.Background(), validReq("k"))
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("RequestPayment with Redis down: code = %v, want Unavailable (err %v)", got, err)
	}
}

// TestReplicaAckShortfallIsUnavailable runs the real repository with a
// replica required on miniredis, which has none: the payment is written on
// the primary but not acknowledged, and the client is told to retry with the
// same key, which replays it.
func TestReplicaAckShortfallIsUnavailable(t *testing.T) {
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	e := start(t, storage.New(rc, storage.Options{IdempotencyTTL: time.Hour, MinReplicaAcks: 1, AckTimeout: time.Millisecond}), nil)

	for _, attempt := range []string{"first call", "retry"} {
		_, err := e.client.RequestPayment(context.Background(), validReq("k"))
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "retry with the same idempotency key") {
			t.Errorf("%s: status = %v %q, want Unavailable telling to retry with the same key", attempt, st.Code(), st.Message())
		}
		var retry bool
		for _, d := range st.Details() {
			_, retry = d.(*errdetails.RetryInfo)
		}
		if !retry {
			t.Errorf("%s: details = %v, want RetryInfo", attempt, st.Details())
		}
		if strings.Contains(st.Message(), "replicas") {
			t.Errorf("%s: message %q leaks internals", attempt, st.Message())
		}
	}
	if got := len(mr.Keys()); got != 2 {
		t.Errorf("Redis holds %d keys, want 2: the first call wrote the payment on the primary, the retry found it", got)
	}
}

func TestHealth(t *testing.T) {
	tests := []struct {
		ready bool
		want  string
	}{{true, "ok"}, {false, "unavailable"}}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			e := start(t, stubStore{}, readyFunc(func() bool { return tt.ready }))
			got, err := e.client.Health(context.Background(), &paymentsv1.HealthRequest{})
			if err != nil {
				t.Fatalf("Health() error = %v", err)
			}
			if got.GetStatus() != tt.want {
				t.Errorf("Health() status = %q, want %q", got.GetStatus(), tt.want)
			}
		})
	}
	t.Run("standard protocol registered", func(t *testing.T) {
		e := start(t, stubStore{}, nil)
		resp, err := e.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("grpc.health.v1 Check() error = %v", err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("grpc.health.v1 Check() = %v, want SERVING", resp.GetStatus())
		}
	})
}

func TestRequestIDAndLogLine(t *testing.T) {
	e := start(t, nil, nil)
	tests := []struct {
		name   string
		sent   string
		echoed func(string) bool
	}{
		{name: "caller id echoed", sent: "req-abc-123", echoed: func(s string) bool { return s == "req-abc-123" }},
		{name: "missing id generated", sent: "", echoed: func(s string) bool { return len(s) >= 16 }},
		{name: "overlong id replaced", sent: strings.Repeat("r", 200), echoed: func(s string) bool { return s != strings.Repeat("r", 200) && s != "" }},
		{name: "id with space replaced", sent: "two words", echoed: func(s string) bool { return s != "two words" && s != "" }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.sent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, RequestIDHeader, tt.sent)
			}
			var hdr metadata.MD
			if _, err := e.client.RequestPayment(ctx, validReq("log-key-"+tt.name), grpc.Header(&hdr)); err != nil {
				t.Fatalf("RequestPayment() error = %v", err)
			}
			ids := hdr.Get(RequestIDHeader)
			if len(ids) != 1 || !tt.echoed(ids[0]) {
				t.Fatalf("response %s = %v, want one acceptable id", RequestIDHeader, ids)
			}
			lines := e.logs.lines(t)
			if len(lines) != i+1 {
				t.Fatalf("got %d log lines after %d calls, want one per call", len(lines), i+1)
			}
			last := lines[len(lines)-1]
			for _, k := range []string{"method", "code", "duration_ms", "peer", "request_id", "payment_id", "idempotency"} {
				if _, ok := last[k]; !ok {
					t.Errorf("log line %v lacks %q", last, k)
				}
			}
			if last["request_id"] != ids[0] || last["idempotency"] != "created" || last["code"] != "OK" {
				t.Errorf("log line = %v, want request_id %s, idempotency created, code OK", last, ids[0])
			}
		})
	}
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	if strings.Contains(e.logs.buf.String(), "do-not-log-me") {
		t.Errorf("a metadata value reached the logs")
	}
}

func TestConcurrentRequestsOneKeyOnePayment(t *testing.T) {
	e := start(t, nil, nil)
	const callers = 64
	var wg sync.WaitGroup
	resps := make([]*paymentsv1.RequestPaymentResponse, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			resps[i], errs[i] = e.client.RequestPayment(context.Background(), validReq("one-key"))
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d error = %v", i, errs[i])
		}
		if diff := cmp.Diff(resps[0], resps[i], protocmp.Transform()); diff != "" {
			t.Errorf("caller %d response differs (-0 +%d):\n%s", i, i, diff)
		}
	}
	if got := len(e.mr.Keys()); got != 2 {
		t.Errorf("Redis holds %d keys, want 2 (one payment and its key): %v", got, e.mr.Keys())
	}
}

func TestOversizeMessageRejected(t *testing.T) {
	e := start(t, nil, nil)
	req := validReq("big")
	req.OrderId = strings.Repeat("x", 65<<10)
	_, err := e.client.RequestPayment(context.Background(), req)
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Errorf("oversize request code = %v, want ResourceExhausted", got)
	}
	if keys := e.mr.Keys(); len(keys) != 0 {
		t.Errorf("oversize request wrote %v", keys)
	}
}

func TestReflectionCanBeTurnedOff(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("reflection=%v", on), func(t *testing.T) {
			e := startWith(t, stubStore{}, nil, on)
			stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// With reflection off the server may end the stream before the
			// request is sent; Send then reports io.EOF and the status
			// comes from Recv, as grpc-go documents.
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
			}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if !on {
				if got := status.Code(err); got != codes.Unimplemented {
					t.Errorf("reflection off: code = %v, want Unimplemented", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("reflection on: %v", err)
			}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			if !slices.Contains(names, "payments.v1.PaymentService") {
				t.Errorf("reflection lists %v, want payments.v1.PaymentService among them", names)
			}
		})
	}
}

// TestAuthentication covers every way a credential can be wrong: each is
// UNAUTHENTICATED with one message that names no part, and writes nothing.
func TestAuthentication(t *testing.T) {
	e := start(t, nil, nil)
	unknown := mustKey("live")
	tests := []struct {
		name string
		md   []string // authorization values; nil sends none
	}{
		{"none", nil},
		{"empty", []string{""}},
		{"no scheme", []string{keyA}},
		{"basic", []string{"Basic " + keyA}},
		{"malformed key", []string{"Bearer pk_live_tooshort"}},
		{"unknown key", []string{"Bearer " + unknown}},
		{"two keys", []string{"Bearer " + keyA, "Bearer " + keyB}},
	}
	anon := paymentsv1.NewPaymentServiceClient(e.dial(t))
	var msg string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			for _, v := range tt.md {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
			}
			calls := map[string]func() error{
				"RequestPayment": func() error { _, err := anon.RequestPayment(ctx, validReq("key-auth")); return err },
				"GetPayment": func() error {
					_, err := anon.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: payments.NewID("m_a", "k", fixedNow)})
					return err
				},
			}
			for name, call := range calls {
				st := status.Convert(call())
				if st.Code() != codes.Unauthenticated {
					t.Fatalf("%s code = %v, want Unauthenticated", name, st.Code())
				}
				if msg == "" {
					msg = st.Message()
				}
				if st.Message() != msg {
					t.Errorf("%s message = %q, want the same %q for every refusal", name, st.Message(), msg)
				}
				for _, k := range []string{keyA, keyB, unknown} {
					if strings.Contains(st.Message(), k) {
						t.Errorf("%s message carries a key", name)
					}
				}
			}
			if keys := e.mr.Keys(); len(keys) != 0 {
				t.Errorf("a refused call wrote %v, want nothing", keys)
			}
		})
	}
	for _, l := range e.logs.lines(t) {
		if line, _ := json.Marshal(l); strings.Contains(string(line), keyA) || strings.Contains(string(line), unknown) {
			t.Errorf("log line carries a key: %s", line)
		}
	}

	t.Run("open methods", func(t *testing.T) {
		if _, err := anon.Health(context.Background(), &paymentsv1.HealthRequest{}); err != nil {
			t.Errorf("Health without credentials = %v, want open", err)
		}
		if _, err := healthpb.NewHealthClient(e.dial(t)).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("grpc.health.v1 without credentials = %v, want open", err)
		}
	})
}

// TestTenancy shows idempotency scoped to the merchant: the same key gives
// two merchants two payments, and neither can read the other's.
func TestTenancy(t *testing.T) {
	e := start(t, nil, nil)
	ctx := context.Background()
	a, b := e.client, e.as(t, keyB)
	pa, err := a.RequestPayment(ctx, validReq("shared-key"))
	if err != nil {
		t.Fatal(err)
	}
	var hdr metadata.MD
	pb, err := b.RequestPayment(ctx, validReq("shared-key"), grpc.Header(&hdr))
	if err != nil {
		t.Fatalf("B with A's key: %v, want its own payment", err)
	}
	if pa.GetPaymentId() == pb.GetPaymentId() || len(hdr.Get(ReplayedHeader)) != 0 {
		t.Fatalf("B got %s (replayed %v), A got %s: want two independent payments", pb.GetPaymentId(), hdr.Get(ReplayedHeader), pa.GetPaymentId())
	}
	changed := validReq("shared-key")
	changed.AmountMinor = 1
	if _, err := b.RequestPayment(ctx, changed); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("B reusing its own key with another amount = %v, want FailedPrecondition", err)
	}

	_, errUnknown := a.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: payments.NewID("m_a", "never", fixedNow)})
	_, errOther := a.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: pb.GetPaymentId()})
	su, so := status.Convert(errUnknown), status.Convert(errOther)
	if so.Code() != codes.NotFound || so.Message() != su.Message() || len(so.Details()) != len(su.Details()) {
		t.Errorf("A reading B's payment = %v %q, want exactly what an unknown id gets: %v %q", so.Code(), so.Message(), su.Code(), su.Message())
	}
	if got, err := b.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: pb.GetPaymentId()}); err != nil || got.GetPaymentId() != pb.GetPaymentId() {
		t.Errorf("B reading its own payment = %v, %v", got, err)
	}

	var merchants []any
	for _, l := range e.logs.lines(t) {
		if l["msg"] == "rpc" && l["method"] == "/payments.v1.PaymentService/RequestPayment" {
			merchants = append(merchants, l["merchant"])
		}
	}
	if diff := cmp.Diff([]any{"m_a", "m_b", "m_b"}, merchants); diff != "" {
		t.Errorf("merchant in the log lines (-want +got):\n%s", diff)
	}
}

// TestRateLimits refuses over quota without burning the key, and still
// answers a replay of a payment that exists.
func TestRateLimits(t *testing.T) {
	e := startOpts(t, opts{reflection: true, limits: &ratelimit.Config{
		Default:   ratelimit.Limits{Create: &ratelimit.Limit{PerSecond: 1, Burst: 2}, Get: &ratelimit.Limit{PerSecond: 1, Burst: 1}},
		Merchants: map[string]ratelimit.Limits{"m_b": {Create: &ratelimit.Limit{}}},
	}})
	ctx := context.Background()
	e.mr.SetTime(fixedNow)
	first, err := e.client.RequestPayment(ctx, validReq("rl-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RequestPayment(ctx, validReq("rl-2")); err != nil {
		t.Fatal(err)
	}

	_, err = e.client.RequestPayment(ctx, validReq("rl-3"))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("third create = %v, want ResourceExhausted", err)
	}
	var retry *errdetails.RetryInfo
	var quota *errdetails.QuotaFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.QuotaFailure:
			quota = d
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > time.Second {
		t.Errorf("RetryInfo = %v, want a delay in (0, 1s]", retry)
	}
	wantQuota := &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
		Subject: "merchant:m_a", Description: "RequestPayment is limited to 1 per second, burst 2",
	}}}
	if diff := cmp.Diff(wantQuota, quota, protocmp.Transform()); diff != "" {
		t.Errorf("QuotaFailure mismatch (-want +got):\n%s", diff)
	}
	if e.mr.Exists(storage.IdempotencyKey("m_a", "rl-3")) {
		t.Errorf("a refused create wrote its idempotency record")
	}

	var hdr metadata.MD
	replay, err := e.client.RequestPayment(ctx, validReq("rl-1"), grpc.Header(&hdr))
	if err != nil || replay.GetPaymentId() != first.GetPaymentId() || len(hdr.Get(ReplayedHeader)) != 1 {
		t.Errorf("replay over quota = %v, %v (header %v), want the original payment replayed", replay, err, hdr)
	}
	changed := validReq("rl-1")
	changed.AmountMinor = 5
	if _, err := e.client.RequestPayment(ctx, changed); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("mismatch over quota = %v, want FailedPrecondition", err)
	}
	if _, err := e.as(t, keyB).RequestPayment(ctx, validReq("rl-3")); err != nil {
		t.Errorf("merchant with an unlimited override = %v, want admitted", err)
	}

	e.mr.SetTime(fixedNow.Add(time.Second))
	var hdr3 metadata.MD
	if _, err := e.client.RequestPayment(ctx, validReq("rl-3"), grpc.Header(&hdr3)); err != nil || len(hdr3.Get(ReplayedHeader)) != 0 {
		t.Errorf("the refused key once quota is back = %v (replayed %v), want a fresh payment", err, hdr3.Get(ReplayedHeader))
	}

	get := &paymentsv1.GetPaymentRequest{PaymentId: first.GetPaymentId()}
	if _, err := e.client.GetPayment(ctx, get); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.GetPayment(ctx, get); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second get within a burst of 1 = %v, want ResourceExhausted", err)
	}
}
