// Package app owns the wiring and lifecycle of payments-svc: it builds the
// Redis client (or the embedded store), the repository, the health monitor,
// the metrics, and the gRPC and HTTP servers from a Config, serves until its
// context ends, and shuts everything down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/metrics"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/tlsfiles"
	grpctransport "github.com/payments-svc/payments-svc/internal/transport/grpc"
	httptransport "github.com/payments-svc/payments-svc/internal/transport/http"
	"github.com/payments-svc/payments-svc/internal/webhook"
)

// HTTP server timeouts. Webhook bodies are small and bounded, so generous
// values still cut slow-loris clients off.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 15 * time.Second
	httpWriteTimeout      = 15 * time.Second
	httpIdleTimeout       = 60 * time.Second
)

// App is one running instance of the service.
type App struct {
	cfg       Config
	log       *slog.Logger
	grpcLis   net.Listener
	httpLis   net.Listener
	grpcSrv   *grpc.Server
	httpSrv   *http.Server
	health    *health.Server
	monitor   *monitor
	stopRedis func()
}

// New builds the service and binds its listeners, so the addresses are known
// before Run. Redis is not required to be up: readiness follows it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	tlsFiles, err := loadTLS(cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	redis.SetLogger(redisLogger{log: log})
	client, stopRedis, err := newRedisClient(cfg, log)
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	client.AddHook(m.RedisHook())
	if cc, ok := client.(*redis.ClusterClient); ok {
		// MOVED and ASK are answered to the node clients, which the
		// cluster client follows before its own hooks see a result.
		events := newRedisEvents(m.ObserveRedisEvent, log, false)
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(events) })
	} else {
		// One master at a time (single node or Sentinel): a connection to
		// another address is a new master.
		client.AddHook(newRedisEvents(m.ObserveRedisEvent, log, true))
	}
	repo := storage.New(client, storage.Options{
		IdempotencyTTL: cfg.IdempotencyTTL,
		PaymentTTL:     cfg.PaymentTTL,
		MinReplicaAcks: cfg.Redis.MinReplicaAcks,
		AckTimeout:     cfg.Redis.ReplicaAckTimeout,
		AckCommand:     storage.AckCommand(cfg.Redis.AckCommand),
		Observer:       m,
	})

	hs := health.NewServer()
	for _, svc := range healthServices {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	hs.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	mon := &monitor{ping: repo.Ping, health: hs, interval: cfg.HealthInterval, log: log}

	grpcSrv := grpctransport.NewServer(grpctransport.ServerConfig{
		Logger:       log,
		Service:      grpctransport.NewService(repo, mon, nil),
		Health:       hs,
		Reflection:   cfg.GRPCReflection,
		MaxRecvBytes: cfg.GRPCMaxRecvBytes,
		Observer:     m,
		Interceptors: []grpc.UnaryServerInterceptor{m.GRPC.UnaryServerInterceptor()},
		Creds:        grpcCreds(tlsFiles),
	})
	m.GRPC.InitializeMetrics(grpcSrv)

	httpSrv := &http.Server{
		Handler: httptransport.NewHandler(httptransport.Config{
			Logger:   log,
			Store:    repo,
			Verifier: webhook.NewVerifier(cfg.Webhook.keys(), cfg.Webhook.Tolerance, nil),
			Ready:    mon.Ready,
			Metrics:  m.Handler(),
			Observer: m,
		}),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if tlsFiles != nil {
		httpSrv.TLSConfig = tlsFiles.Config()
	}

	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		stopRedis()
		return nil, fmt.Errorf("listen on PAYMENTS_GRPC_ADDR %s: %w", cfg.GRPCAddr, err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		stopRedis()
		return nil, fmt.Errorf("listen on PAYMENTS_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}

	// Loading scripts ahead is an optimisation; with Redis down the first
	// call loads them instead.
	lctx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout)
	defer cancel()
	if err := repo.LoadScripts(lctx); err != nil {
		log.Debug("scripts not preloaded", slog.String("error", err.Error()))
	}
	// A Redis that refuses WAITAOF would fail every payment: refuse to start
	// instead. With Redis down the check waits for the first payment, which
	// then fails with the same explanation.
	switch err := repo.CheckAcks(lctx); {
	case errors.Is(err, storage.ErrAckUnsupported):
		_ = httpLis.Close()
		_ = grpcLis.Close()
		stopRedis()
		return nil, fmt.Errorf("PAYMENTS_REDIS_ACK_COMMAND is waitaof: %w", err)
	case err != nil:
		log.Debug("acknowledgement command not checked", slog.String("error", err.Error()))
	}

	return &App{
		cfg: cfg, log: log,
		grpcLis: grpcLis, httpLis: httpLis, grpcSrv: grpcSrv, httpSrv: httpSrv,
		health: hs, monitor: mon, stopRedis: stopRedis,
	}, nil
}

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() net.Addr { return a.httpLis.Addr() }

// Run serves until ctx ends or a server fails, then shuts down: readiness goes
// NOT_SERVING first, in-flight calls and requests get
// PAYMENTS_SHUTDOWN_TIMEOUT to finish, and whatever remains is cut. A
// shutdown asked for by ctx returns nil.
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

	// The listeners were bound in New, so the kernel already queues
	// connections: announce them before anything can start a shutdown, so the
	// log always reads listening, then shutdown, whatever the scheduler does.
	a.log.Info("grpc server listening", slog.String("addr", a.grpcLis.Addr().String()),
		slog.Bool("embedded_store", a.cfg.Embedded()), slog.Bool("tls", a.cfg.TLS.Enabled()))
	a.log.Info("http server listening", slog.String("addr", a.httpLis.Addr().String()),
		slog.Bool("tls", a.cfg.TLS.Enabled()))

	serveErr := make(chan error, 2)
	go func() {
		if err := a.grpcSrv.Serve(a.grpcLis); err != nil {
			serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	go func() {
		serve := a.httpSrv.Serve
		if a.httpSrv.TLSConfig != nil {
			// The certificate comes from TLSConfig, not from files named here.
			serve = func(l net.Listener) error { return a.httpSrv.ServeTLS(l, "", "") }
		}
		if err := serve(a.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("http server: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutdown started", slog.String("cause", context.Cause(ctx).Error()))
	case runErr = <-serveErr:
		a.log.Error("shutdown started", slog.String("cause", runErr.Error()))
	}

	stopMonitor()
	<-monDone
	// From here on every probe sees NOT_SERVING, so load balancers drain
	// this instance while in-flight work finishes.
	a.monitor.stop()
	a.health.Shutdown()

	if !a.drain(context.WithoutCancel(ctx)) {
		// Cutting work at the deadline is the designed behaviour, not a
		// failure of the process: clients retry with their idempotency keys
		// and providers redeliver events.
		a.log.Warn("graceful stop exceeded PAYMENTS_SHUTDOWN_TIMEOUT; remaining calls were cut",
			slog.Duration("timeout", a.cfg.ShutdownTimeout))
	}
	a.log.Info("shutdown complete")
	return runErr
}

// drain stops both servers gracefully within the shutdown timeout, then cuts
// what remains. It reports whether everything finished in time.
func (a *App) drain(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
	defer cancel()

	var wg sync.WaitGroup
	grpcDone := make(chan struct{})
	wg.Go(func() {
		a.grpcSrv.GracefulStop()
		close(grpcDone)
	})
	httpClean := true
	wg.Go(func() {
		if err := a.httpSrv.Shutdown(ctx); err != nil {
			httpClean = false
			_ = a.httpSrv.Close()
		}
	})
	grpcClean := true
	select {
	case <-grpcDone:
	case <-ctx.Done():
		grpcClean = false
		a.grpcSrv.Stop()
	}
	wg.Wait()
	return grpcClean && httpClean
}

// loadTLS reads the TLS files, or returns nil when TLS is off. Reloads are
// logged; a failed one keeps the previous certificate, so it is an error to
// act on before that certificate expires.
func loadTLS(c TLSConfig, log *slog.Logger) (*tlsfiles.Server, error) {
	if !c.Enabled() {
		return nil, nil
	}
	var files *tlsfiles.Server
	files, err := tlsfiles.New(tlsfiles.Options{
		CertFile:      c.CertFile,
		KeyFile:       c.KeyFile,
		ClientCAFile:  c.ClientCAFile,
		CheckInterval: c.ReloadInterval,
		OnReload: func() {
			log.Info("tls files reloaded", certAttrs(files)...)
		},
		OnReloadError: func(err error) {
			log.Error("tls files not reloaded; serving the previous certificate",
				append(certAttrs(files), slog.String("error", err.Error()))...)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("PAYMENTS_TLS_*: %w", err)
	}
	log.Info("tls enabled", append(certAttrs(files), slog.Bool("client_certificates", c.ClientCAFile != ""))...)
	return files, nil
}

func certAttrs(files *tlsfiles.Server) []any {
	leaf := files.Certificate()
	return []any{slog.String("serial", leaf.SerialNumber.Text(16)), slog.Time("not_after", leaf.NotAfter)}
}

func grpcCreds(files *tlsfiles.Server) credentials.TransportCredentials {
	if files == nil {
		return nil
	}
	return credentials.NewTLS(files.Config())
}
