package app

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/tlsfiles"
	"github.com/payments-svc/payments-svc/internal/tlsfiles/tlstest"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testSecret is a throwaway webhook secret for tests.
const testSecret = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"

func testConfig(redisAddr string) Config {
	cfg := Config{
		Environment:      "development",
		GRPCAddr:         "127.0.0.1:0",
		HTTPAddr:         "127.0.0.1:0",
		AdminAddr:        "127.0.0.1:0",
		GRPCReflection:   true,
		GRPCMaxRecvBytes: 65536,
		ShutdownTimeout:  5 * time.Second,
		IdempotencyTTL:   time.Hour,
		HealthInterval:   20 * time.Millisecond,
		ReloadInterval:   time.Millisecond,
		Redis: RedisConfig{
			Mode:         "auto",
			DialTimeout:  time.Second,
			ReadTimeout:  time.Second,
			WriteTimeout: time.Second,
		},
		Webhook: WebhookConfig{Secrets: []string{testSecret}, Tolerance: 5 * time.Minute},
	}
	if redisAddr != "" {
		cfg.Redis.Addrs = []string{redisAddr}
	}
	return cfg
}

// steadyConfig is testConfig on the embedded store with one health check, at
// start: that store never goes down, and a re-check whose 20 ms ping a loaded
// machine misses would flip readiness under the test's assertions.
func steadyConfig() Config {
	cfg := testConfig("")
	cfg.HealthInterval = time.Hour
	return cfg
}

// startApp runs an App until the test ends. It returns a connection to it
// and stop, which cancels Run and returns its result; calling it again
// returns the same result.
func startApp(t *testing.T, cfg Config) (a *App, conn *grpc.ClientConn, stop func() error) {
	t.Helper()
	return startAppAs(t, cfg, auth.DevKey)
}

// startAppAs is startApp with a connection that calls with key.
func startAppAs(t *testing.T, cfg Config, key string) (a *App, conn *grpc.ClientConn, stop func() error) {
	t.Helper()
	a, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	// Serving both planes is Run's job; stop always waits for it.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { _ = stop() })
	conn, err = grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.Bearer(key)))
	if err != nil {
		t.Fatalf("grpc.NewClient() error = %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return a, conn, stop
}

// get fetches a path from the app's admin plane.
func get(t *testing.T, a *App, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+a.AdminAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitReadyz polls /readyz until it answers want, or fails the test at the
// deadline: readiness follows a ping that a loaded machine can miss, so it may
// take a few checks to settle.
func waitReadyz(t *testing.T, a *App, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := get(t, a, "/readyz")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d after 10s, want %d", code, want)
		}
	}
}

// waitFor watches grpc.health.v1 until the service reports want, or fails the
// test at the deadline. Watch streams every change, so no polling is needed.
func waitFor(t *testing.T, conn *grpc.ClientConn, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "payments.v1.PaymentService"})
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %v: %v", want, err)
		}
		if resp.GetStatus() == want {
			return
		}
	}
}

func TestAppServesOnEmbeddedStoreAndStopsCleanly(t *testing.T) {
	a, conn, stop := startApp(t, steadyConfig())
	waitFor(t, conn, healthpb.HealthCheckResponse_SERVING)

	client := paymentsv1.NewPaymentServiceClient(conn)
	resp, err := client.RequestPayment(context.Background(), &paymentsv1.RequestPaymentRequest{
		AmountMinor: 500, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1",
	})
	if err != nil {
		t.Fatalf("RequestPayment() error = %v", err)
	}
	if _, err := client.GetPayment(context.Background(), &paymentsv1.GetPaymentRequest{PaymentId: resp.GetPaymentId()}); err != nil {
		t.Errorf("GetPayment() error = %v", err)
	}
	h, err := client.Health(context.Background(), &paymentsv1.HealthRequest{})
	if err != nil || h.GetStatus() != "ok" {
		t.Errorf("Health() = %v, %v, want ok", h, err)
	}
	if _, err := client.RequestPayment(context.Background(), &paymentsv1.RequestPaymentRequest{
		AmountMinor: 500, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1",
	}); err != nil {
		t.Fatalf("replay RequestPayment() error = %v", err)
	}

	// A refused call must be counted with its real code, not as Unknown:
	// errors are mapped to statuses inside the metrics interceptor.
	if _, err := client.RequestPayment(context.Background(), &paymentsv1.RequestPaymentRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty RequestPayment() = %v, want InvalidArgument", err)
	}

	code, body := get(t, a, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		"payments_created_total 1",
		"payments_idempotent_replays_total 1",
		"payments_idempotency_mismatch_total 0",
		`grpc_server_handled_total{grpc_code="OK",grpc_method="RequestPayment",grpc_service="payments.v1.PaymentService",grpc_type="unary"} 2`,
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="RequestPayment",grpc_service="payments.v1.PaymentService",grpc_type="unary"} 1`,
		"grpc_server_handling_seconds_bucket",
		"redis_errors_total ", // its value depends on health pings racing a loaded machine; see TestRedisHandshakeIsClean
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q\n%s", want, body)
		}
	}
	if code, _ := get(t, a, "/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", code)
	}

	if err := stop(); err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

func TestReadinessFollowsRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	a, conn, _ := startApp(t, testConfig(mr.Addr()))
	client := paymentsv1.NewPaymentServiceClient(conn)
	waitFor(t, conn, healthpb.HealthCheckResponse_SERVING)

	mr.Close()
	waitFor(t, conn, healthpb.HealthCheckResponse_NOT_SERVING)
	live, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: LivenessService})
	if err != nil || live.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("liveness with Redis down = %v, %v, want SERVING", live, err)
	}
	if h, err := client.Health(context.Background(), &paymentsv1.HealthRequest{}); err != nil || h.GetStatus() != "unavailable" {
		t.Errorf("Health() with Redis down = %v, %v, want unavailable", h, err)
	}
	if code, _ := get(t, a, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with Redis down = %d, want 503", code)
	}
	if code, _ := get(t, a, "/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz with Redis down = %d, want 200", code)
	}
	_, err = client.RequestPayment(context.Background(), &paymentsv1.RequestPaymentRequest{
		AmountMinor: 500, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1",
	})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("RequestPayment() with Redis down: code = %v, want Unavailable", got)
	}

	if err := mr.Restart(); err != nil {
		t.Fatalf("miniredis Restart() error = %v", err)
	}
	waitFor(t, conn, healthpb.HealthCheckResponse_SERVING)
	waitReadyz(t, a, http.StatusOK)
	if _, err := client.RequestPayment(context.Background(), &paymentsv1.RequestPaymentRequest{
		AmountMinor: 500, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1",
	}); err != nil {
		t.Errorf("RequestPayment() after Redis came back: %v, want success", err)
	}
}

// TestReplicaAcksAreWired requires a replica of miniredis, which has none:
// RequestPayment must fail UNAVAILABLE and the shortfall must reach /metrics.
func TestReplicaAcksAreWired(t *testing.T) {
	mr := miniredis.RunT(t)
	cfg := testConfig(mr.Addr())
	cfg.Redis.MinReplicaAcks, cfg.Redis.ReplicaAckTimeout, cfg.Redis.AckCommand = 1, time.Millisecond, "wait"
	a, conn, _ := startApp(t, cfg)
	client := paymentsv1.NewPaymentServiceClient(conn)
	_, err := client.RequestPayment(context.Background(), &paymentsv1.RequestPaymentRequest{
		AmountMinor: 500, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1",
	})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("RequestPayment() with no replica: code = %v (%v), want Unavailable", got, err)
	}
	if _, body := get(t, a, "/metrics"); !strings.Contains(body, "redis_replica_acks_shortfall_total 1") {
		t.Errorf("/metrics lacks redis_replica_acks_shortfall_total 1:\n%s", body)
	}
}

func TestNewRefusesWaitAOFWhereRedisLacksIt(t *testing.T) {
	mr := miniredis.RunT(t) // like Redis before 7.2, it does not know WAITAOF
	cfg := testConfig(mr.Addr())
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.Redis.MinReplicaAcks, cfg.Redis.ReplicaAckTimeout, cfg.Redis.AckCommand = 1, 100*time.Millisecond, "waitaof"
	_, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "PAYMENTS_REDIS_ACK_COMMAND") || !strings.Contains(err.Error(), "7.2") {
		t.Fatalf("New() with waitaof on a Redis without it = %v, want an error naming PAYMENTS_REDIS_ACK_COMMAND and Redis 7.2", err)
	}
	// The refusal released its listeners: the same addresses bind again.
	cfg.Redis.AckCommand = "wait"
	a, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New() with wait = %v, want nil", err)
	}
	a.stopRedis()
	_ = a.grpcLis.Close()
	_ = a.httpLis.Close()
	_ = a.adminLis.Close()

	// Redis down: the check cannot run, so start-up goes on.
	mr.Close()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Redis.AckCommand = "waitaof"
	a, err = New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New() with waitaof and Redis down = %v, want nil: Redis need not be up at start", err)
	}
	a.stopRedis()
	_ = a.grpcLis.Close()
	_ = a.httpLis.Close()
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestHealthcheck(t *testing.T) {
	a, err := New(context.Background(), steadyConfig(), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := a.GRPCAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, conn, healthpb.HealthCheckResponse_SERVING)

	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := Healthcheck(cctx, addr, "payments.v1.PaymentService", nil); err != nil {
		t.Errorf("Healthcheck() on a serving server = %v, want nil", err)
	}
	if err := Healthcheck(cctx, addr, "no.such.Service", nil); err == nil {
		t.Errorf("Healthcheck() of an unknown service = nil, want an error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	if err := Healthcheck(cctx, addr, "payments.v1.PaymentService", nil); err == nil {
		t.Errorf("Healthcheck() on a stopped server = nil, want an error")
	}
}

func TestNewFailsOnBusyAddress(t *testing.T) {
	_, conn, _ := startApp(t, testConfig(""))
	cfg := testConfig("")
	cfg.GRPCAddr = conn.Target()
	if _, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil))); err == nil {
		t.Errorf("New() on a busy address = nil error, want one")
	}
}

// TestKeysFileIsWired checks that a keys file replaces the development key,
// that rotating it takes effect without a restart, and that the reload is
// counted.
func TestKeysFileIsWired(t *testing.T) {
	oldKey, err := auth.NewKey("test")
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := auth.NewKey("test")
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/keys"
	writeFile(t, path, auth.Line("m_1", oldKey)+"\n")
	cfg := testConfig("")
	cfg.Auth.KeysFile = path
	a, conn, _ := startAppAs(t, cfg, oldKey)
	client := paymentsv1.NewPaymentServiceClient(conn)
	ctx := context.Background()
	req := &paymentsv1.RequestPaymentRequest{AmountMinor: 100, Currency: "EUR", OrderId: "o", IdempotencyKey: "k"}
	if _, err := client.RequestPayment(ctx, req); err != nil {
		t.Fatalf("RequestPayment() with a key from the file = %v", err)
	}
	dev, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if _, err := paymentsv1.NewPaymentServiceClient(dev).RequestPayment(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RequestPayment() with the dev key beside a keys file = %v, want Unauthenticated", err)
	}

	// Rotate: the old key is revoked, a new one granted.
	tmp := path + ".new"
	writeFile(t, tmp, auth.Line("m_1", newKey)+"\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := client.RequestPayment(ctx, req)
		if status.Code(err) == codes.Unauthenticated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked key still works 10s after the file changed: %v", err)
		}
		runtime.Gosched()
	}
	if _, body := get(t, a, "/metrics"); !strings.Contains(body, `config_reloads_total{file="api_keys",result="ok"} 1`) {
		t.Errorf("/metrics lacks one api_keys reload")
	}

	bad := testConfig("")
	bad.Auth.KeysFile = t.TempDir() + "/missing"
	if _, err := New(ctx, bad, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "PAYMENTS_AUTH_KEYS_FILE") {
		t.Errorf("New() with a missing keys file = %v, want an error naming PAYMENTS_AUTH_KEYS_FILE", err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	caFile := ca.Write(t, dir, "ca.pem")
	certFile, keyFile := ca.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	clientCert, clientKey := ca.Issue(t, tlstest.Template{CommonName: "merchant", Client: true,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "payments.test", Path: "/merchant/m_cert"}}}).Write(t, dir, "client")
	cfg := testConfig("")
	cfg.TLS = TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	cfg.ReloadInterval = time.Hour
	a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil after its context ended", err)
		}
	})

	clientTLS := func(t *testing.T, o tlsfiles.ClientOptions) *tls.Config {
		t.Helper()
		c, err := tlsfiles.ClientConfig(o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	anonymous := clientTLS(t, tlsfiles.ClientOptions{CAFile: caFile})
	withCert := clientTLS(t, tlsfiles.ClientOptions{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey})
	conn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(anonymous)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, conn, healthpb.HealthCheckResponse_SERVING)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name    string
		tls     *tls.Config
		wantErr bool
	}{
		{name: "tls", tls: anonymous},
		{name: "mtls", tls: withCert},
		{name: "plaintext", tls: nil, wantErr: true},
	} {
		t.Run("grpc "+tt.name, func(t *testing.T) {
			// Liveness, not readiness: this is about the handshake, and
			// readiness follows a 20 ms ping that a loaded machine can miss.
			err := Healthcheck(ctx, a.GRPCAddr().String(), LivenessService, tt.tls)
			if (err != nil) != tt.wantErr {
				t.Errorf("Healthcheck() = %v, want error: %t", err, tt.wantErr)
			}
		})
		t.Run("http "+tt.name, func(t *testing.T) {
			scheme, tr := "http", &http.Transport{}
			if tt.tls != nil {
				scheme, tr.TLSClientConfig, tr.ForceAttemptHTTP2 = "https", tt.tls, true
			}
			defer tr.CloseIdleConnections()
			// Any answer from the webhook route proves the handshake: a GET
			// is refused with 405.
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+a.HTTPAddr().String()+"/v1/webhooks/provider", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			switch {
			case tt.wantErr && err == nil && resp.StatusCode == http.StatusMethodNotAllowed:
				t.Errorf("GET webhook over %s = %s, want a failure", tt.name, resp.Status)
			case !tt.wantErr && err != nil:
				t.Errorf("GET webhook over %s: %v, want 405", tt.name, err)
			case !tt.wantErr && resp.StatusCode != http.StatusMethodNotAllowed:
				t.Errorf("GET webhook over %s = %s, want 405", tt.name, resp.Status)
			}
		})
	}

	// The verified certificate is the merchant's identity: it creates a
	// payment with no API key, and nothing else is accepted beside it.
	certConn, err := grpc.NewClient(a.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer certConn.Close()
	req := &paymentsv1.RequestPaymentRequest{AmountMinor: 100, Currency: "EUR", OrderId: "o", IdempotencyKey: "k-cert"}
	if _, err := paymentsv1.NewPaymentServiceClient(certConn).RequestPayment(ctx, req); err != nil {
		t.Errorf("RequestPayment() with a merchant certificate = %v, want success", err)
	}
	if _, err := paymentsv1.NewPaymentServiceClient(conn).RequestPayment(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RequestPayment() over TLS without a certificate or key = %v, want Unauthenticated", err)
	}
	devCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+auth.DevKey)
	if _, err := paymentsv1.NewPaymentServiceClient(certConn).RequestPayment(devCtx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RequestPayment() with a certificate and the dev key = %v, want Unauthenticated: no dev key beside a client CA", err)
	}
}

func TestNewRefusesBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	missing := dir + "/missing.crt"
	cfg := testConfig("")
	cfg.TLS = TLSConfig{CertFile: missing, KeyFile: dir + "/missing.key"}
	_, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "PAYMENTS_TLS") {
		t.Errorf("New() with a missing certificate = %v, want an error naming PAYMENTS_TLS and %s", err, missing)
	}
}
