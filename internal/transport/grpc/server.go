package grpctransport

import (
	"log/slog"

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

// NewServer builds the gRPC server with every service registered and the
// interceptor chain in place: observe (request id, log line), then
// cfg.Interceptors (metrics), then error mapping, then panic recovery, then
// authentication, then the handler.
func NewServer(cfg ServerConfig) *grpc.Server {
	chain := []grpc.UnaryServerInterceptor{observe(cfg.Logger, cfg.Observer)}
	chain = append(chain, cfg.Interceptors...)
	chain = append(chain, mapErrors, recovery.UnaryServerInterceptor(), authenticate(cfg.Authenticator))

	opts := []grpc.ServerOption{
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
