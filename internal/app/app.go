// Package app owns the wiring and lifecycle of payments-svc: it builds the
// Redis client (or the embedded store), the repository, the health monitor and
// the gRPC server from a Config, serves until its context ends, and shuts
// everything down in order.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/storage"
	grpctransport "github.com/payments-svc/payments-svc/internal/transport/grpc"
)

// App is one running instance of the service.
type App struct {
	cfg       Config
	log       *slog.Logger
	grpcLis   net.Listener
	grpcSrv   *grpc.Server
	health    *health.Server
	monitor   *monitor
	stopRedis func()
}

// New builds the service and binds its listeners, so the addresses are known
// before Run. Redis is not required to be up: readiness follows it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	redis.SetLogger(redisLogger{log: log})
	client, stopRedis, err := newRedisClient(cfg, log)
	if err != nil {
		return nil, err
	}
	repo := storage.New(client, storage.Options{IdempotencyTTL: cfg.IdempotencyTTL, PaymentTTL: cfg.PaymentTTL})

	hs := health.NewServer()
	for _, svc := range healthServices {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	hs.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	mon := &monitor{ping: repo.Ping, health: hs, interval: cfg.HealthInterval, log: log}

	srv := grpctransport.NewServer(grpctransport.ServerConfig{
		Logger:       log,
		Service:      grpctransport.NewService(repo, mon, nil),
		Health:       hs,
		Reflection:   cfg.GRPCReflection,
		MaxRecvBytes: cfg.GRPCMaxRecvBytes,
	})

	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		stopRedis()
		return nil, fmt.Errorf("listen on PAYMENTS_GRPC_ADDR %s: %w", cfg.GRPCAddr, err)
	}

	// Loading scripts ahead is an optimisation; with Redis down the first
	// call loads them instead.
	lctx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout)
	if err := repo.LoadScripts(lctx); err != nil {
		log.Debug("scripts not preloaded", slog.String("error", err.Error()))
	}
	cancel()

	return &App{cfg: cfg, log: log, grpcLis: lis, grpcSrv: srv, health: hs, monitor: mon, stopRedis: stopRedis}, nil
}

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// Run serves until ctx ends or a server fails, then shuts down: readiness goes
// NOT_SERVING first, in-flight calls get PAYMENTS_SHUTDOWN_TIMEOUT to finish,
// and whatever remains is cut. A shutdown asked for by ctx returns nil.
func (a *App) Run(ctx context.Context) error {
	defer a.stopRedis()

	// The monitor outlives ctx: it is stopped explicitly, after the cause of
	// the shutdown is known and before health turns NOT_SERVING for good.
	monCtx, stopMonitor := context.WithCancel(context.WithoutCancel(ctx))
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		a.monitor.run(monCtx)
	}()

	serveErr := make(chan error, 1)
	go func() {
		a.log.Info("grpc server listening", slog.String("addr", a.grpcLis.Addr().String()),
			slog.Bool("embedded_store", a.cfg.Embedded()))
		serveErr <- a.grpcSrv.Serve(a.grpcLis)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutdown started", slog.String("cause", context.Cause(ctx).Error()))
	case err := <-serveErr:
		runErr = fmt.Errorf("grpc server: %w", err)
	}

	stopMonitor()
	<-monDone
	// From here on every probe sees NOT_SERVING, so load balancers drain
	// this instance while in-flight calls finish.
	a.health.Shutdown()

	if !a.gracefulStop() {
		// Cutting calls at the deadline is the designed behaviour, not a
		// failure of the process: clients retry with their idempotency keys.
		a.log.Warn("graceful stop exceeded PAYMENTS_SHUTDOWN_TIMEOUT; remaining calls were cut",
			slog.Duration("timeout", a.cfg.ShutdownTimeout))
	}
	a.log.Info("shutdown complete")
	return runErr
}

// gracefulStop waits for in-flight calls up to the shutdown timeout, then
// cuts the rest. It reports whether every call finished in time.
func (a *App) gracefulStop() bool {
	done := make(chan struct{})
	go func() {
		a.grpcSrv.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(a.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		a.grpcSrv.Stop()
		<-done
		return false
	}
}
