package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	grpctransport "github.com/payments-svc/payments-svc/internal/transport/grpc"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

func request() payments.Request {
	return payments.Request{MerchantID: "m_test",
		AmountMinor:    1250,
		Currency:       "EUR",
		OrderID:        "order-2026-000123",
		IdempotencyKey: "3f0c7a52-9d1e-4b6a-8f2d-5e7c1a9b0d34",
		Metadata:       map[string]string{"source": "bench", "customer": "c-42"},
	}
}

func BenchmarkValidate(b *testing.B) {
	req := request()
	for b.Loop() {
		if err := payments.Validate(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	req := request()
	for b.Loop() {
		_ = payments.Fingerprint(req)
	}
}

func BenchmarkParseID(b *testing.B) {
	id := payments.NewID("m_test", request().IdempotencyKey, time.Now())
	for b.Loop() {
		if _, err := payments.ParseID(id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewID(b *testing.B) {
	key, now := request().IdempotencyKey, time.Now()
	for b.Loop() {
		_ = payments.NewID("m_test", key, now)
	}
}

// keySeq makes every "new" key unique across runs and -count.
var keySeq atomic.Int64

type alwaysReady struct{}

func (alwaysReady) Ready() bool { return true }

// serve runs the real gRPC server (interceptor chain and JSON logging at
// info, written to io.Discard) over bufconn on the given Redis address and
// returns a client.
func serve(b *testing.B, redisAddr string) paymentsv1.PaymentServiceClient {
	return serveWith(b, redisAddr, storage.Options{IdempotencyTTL: 24 * time.Hour})
}

// serveWith is serve with storage options of the caller's choosing.
func serveWith(b *testing.B, redisAddr string, opts storage.Options) paymentsv1.PaymentServiceClient {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { rdb.Close() })
	repo := storage.New(rdb, opts)
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := grpctransport.NewServer(grpctransport.ServerConfig{
		Logger:        log,
		Service:       grpctransport.NewService(repo, alwaysReady{}, nil, nil),
		Health:        health.NewServer(),
		MaxRecvBytes:  65536,
		Authenticator: auth.NewAuthenticator(auth.DevKeys()),
	})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return paymentsv1.NewPaymentServiceClient(conn)
}

// redisServer starts a real redis-server for the benchmark, or skips.
func redisServer(b *testing.B, args ...string) string {
	b.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not on PATH")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--dir", b.TempDir()}, args...)...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			b.Fatal("redis-server did not answer PING within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addr
}

// BenchmarkRequestPayment is the whole handler path through the real gRPC
// server: new payments, replays and reads, on miniredis (in process; its Lua
// interpreter dominates) and on a real redis-server (the path to profile).
func BenchmarkRequestPayment(b *testing.B) {
	backends := []struct {
		name string
		addr func(*testing.B) string
	}{
		{"miniredis", func(b *testing.B) string { return miniredis.RunT(b).Addr() }},
		{"redis-server", func(b *testing.B) string { return redisServer(b) }},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			c := serve(b, be.addr(b))
			ctx := context.Background()
			seed, err := c.RequestPayment(ctx, payRequest("seed"))
			if err != nil {
				b.Fatal(err)
			}
			benchCreates(b, c, "seed")
			b.Run("get", func(b *testing.B) {
				for b.Loop() {
					if _, err := c.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: seed.GetPaymentId()}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkReplicaAcks measures what PAYMENTS_REDIS_MIN_REPLICA_ACKS costs:
// the same calls against one primary with one replica, answered at once and
// after WAIT 1, side by side in one run.
func BenchmarkReplicaAcks(b *testing.B) {
	primary := redisServer(b)
	host, port, _ := net.SplitHostPort(primary)
	replica := redisServer(b, "--replicaof", host, port)
	rc := redis.NewClient(&redis.Options{Addr: replica})
	defer rc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(rc.Info(context.Background(), "replication").Val(), "master_link_status:up") {
		if time.Now().After(deadline) {
			b.Fatal("replica did not sync within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, acks := range []int{0, 1} {
		b.Run(fmt.Sprintf("acks=%d", acks), func(b *testing.B) {
			c := serveWith(b, primary, storage.Options{
				IdempotencyTTL: 24 * time.Hour, MinReplicaAcks: acks, AckTimeout: 250 * time.Millisecond,
			})
			seedKey := fmt.Sprintf("seed-%d", acks)
			if _, err := c.RequestPayment(context.Background(), payRequest(seedKey)); err != nil {
				b.Fatal(err)
			}
			benchCreates(b, c, seedKey)
		})
	}
}

// payRequest is request() on the wire, under key.
func payRequest(key string) *paymentsv1.RequestPaymentRequest {
	r := request()
	return &paymentsv1.RequestPaymentRequest{
		AmountMinor: r.AmountMinor, Currency: r.Currency, OrderId: r.OrderID,
		IdempotencyKey: key, Metadata: r.Metadata,
	}
}

// benchCreates runs the create sub-benchmarks every backend shares: one
// caller with new keys, 64 callers with new keys (the shape of the ghz load,
// and the one to profile for throughput), and replays of seedKey.
func benchCreates(b *testing.B, c paymentsv1.PaymentServiceClient, seedKey string) {
	ctx := context.Background()
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.RequestPayment(ctx, payRequest(fmt.Sprintf("new-%d", keySeq.Add(1)))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new-parallel64", func(b *testing.B) {
		b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.RequestPayment(ctx, payRequest(fmt.Sprintf("new-%d", keySeq.Add(1)))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("replay", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.RequestPayment(ctx, payRequest(seedKey)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTracing prices tracing on the gRPC create path (new keys, one
// caller, miniredis): off as shipped without OTEL_EXPORTER_OTLP_ENDPOINT,
// and with the app's instrumentation (otelgrpc, redisotel with script
// names, trace ids on log lines) into a provider sampling 1 % and 100 %
// of root spans, batching into an exporter that discards them.
func BenchmarkTracing(b *testing.B) {
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"ratio=0.01", sdktrace.TraceIDRatioBased(0.01)},
		{"ratio=1", sdktrace.AlwaysSample()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var tp *sdktrace.TracerProvider
			if tc.sampler != nil {
				tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sdktrace.ParentBased(tc.sampler)))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			}
			c := serveTraced(b, miniredis.RunT(b).Addr(), tp)
			ctx := context.Background()
			for b.Loop() {
				if _, err := c.RequestPayment(ctx, payRequest(fmt.Sprintf("new-%d", keySeq.Add(1)))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardExporter drops every span, so the benchmark prices recording and
// batching, not a collector.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// serveTraced is serve wired as internal/app wires tracing when tp is set.
func serveTraced(b *testing.B, redisAddr string, tp *sdktrace.TracerProvider) paymentsv1.PaymentServiceClient {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	b.Cleanup(func() { rdb.Close() })
	logh := telemetry.LogHandler(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var sh stats.Handler
	if tp != nil {
		if err := storage.InstrumentTracing(rdb, tp); err != nil {
			b.Fatal(err)
		}
		sh = otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(telemetry.Propagator()))
	}
	srv := grpctransport.NewServer(grpctransport.ServerConfig{
		Logger:        slog.New(logh),
		Service:       grpctransport.NewService(storage.New(rdb, storage.Options{IdempotencyTTL: 24 * time.Hour}), alwaysReady{}, nil, nil),
		Health:        health.NewServer(),
		MaxRecvBytes:  65536,
		Authenticator: auth.NewAuthenticator(auth.DevKeys()),
		StatsHandler:  sh,
	})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return paymentsv1.NewPaymentServiceClient(conn)
}
