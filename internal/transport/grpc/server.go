package grpctransport

import (
	"log/slog"
	"runtime"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// ServerConfig is what NewServer needs.
type ServerConfig struct {
	Logger *slog.Logger
	// Service is the PaymentService implementation.
	Service *Service
	// Health is the grpc.health.v1 server whose statuses the caller drives.
	Health *health.Server
	// Reflection registers the server reflection service, for grpcurl.
	Reflection bool
	// MaxRecvBytes bounds the size of one request message.
	MaxRecvBytes int
	// Authenticator identifies the merchant of every PaymentService call
	// except Health; nil refuses them all.
	Authenticator Authenticator
	// Observer, if set, is told about every finished call.
	Observer CallObserver
	// Interceptors run inside the observer and outside error mapping and
	// panic recovery, so they see final status codes: a metrics interceptor.
	Interceptors []grpc.UnaryServerInterceptor
	// Creds, if set, secures the transport (TLS); nil serves plaintext.
	Creds credentials.TransportCredentials
	// StatsHandler, if set, sees every call from outside the interceptors:
	// otelgrpc's server handler, which starts the call's span from the
	// caller's traceparent so the interceptors and handlers run inside it.
	StatsHandler stats.Handler
}

// streamWorkers covers the calls one replica has in flight at the rates it
// serves (a few, each waiting on Redis for well under a millisecond), with
// room to spare.
func streamWorkers() uint32 {
	return uint32(max(16, 4*runtime.GOMAXPROCS(0)))
}

// NewServer builds the gRPC server with every service registered and the
// interceptor chain in place: observe (request id, log line), then
// cfg.Interceptors (metrics), then error mapping, then panic recovery, then
// authentication, then the handler.
func NewServer(cfg ServerConfig) *grpc.Server {
	chain := []grpc.UnaryServerInterceptor{observe(cfg.Logger, cfg.Observer)}
	chain = append(chain, cfg.Interceptors...)
	chain = append(chain, mapErrors, recovery.UnaryServerInterceptor(), authenticate(cfg.Authenticator))

	opts := []grpc.ServerOption{
		// Without workers every call runs on a fresh goroutine, whose stack
		// grows (runtime.morestack, copying) through the interceptors and
		// go-redis on every call: 7 % of the CPU of RequestPayment in the
		// profile (BENCHMARKS.md). Workers keep their grown stacks; when all
		// are busy gRPC starts a goroutine as before. The option is marked
		// experimental in grpc-go; dropping it costs CPU, not behaviour.
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.ChainUnaryInterceptor(chain...),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor()),
	}
	if cfg.Creds != nil {
		opts = append(opts, grpc.Creds(cfg.Creds))
	}
	if cfg.StatsHandler != nil {
		opts = append(opts, grpc.StatsHandler(cfg.StatsHandler))
	}
	srv := grpc.NewServer(opts...)
	paymentsv1.RegisterPaymentServiceServer(srv, cfg.Service)
	healthpb.RegisterHealthServer(srv, cfg.Health)
	if cfg.Reflection {
		reflection.Register(srv)
	}
	return srv
}
