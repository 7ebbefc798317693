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
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/metrics"
	"github.com/payments-svc/payments-svc/internal/ratelimit"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
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
	adminLis  net.Listener
	apiLis    *bufconn.Listener // in-process: the JSON API's gateway to grpcSrv
	apiConn   *grpc.ClientConn
	grpcSrv   *grpc.Server
	httpSrv   *http.Server
	adminSrv  *http.Server
	health    *health.Server
	monitor   *monitor
	stopRedis func() // with tracing on, also flushes and stops the tracer provider
}

// New builds the service and binds its listeners, so the addresses are known
// before Run. Redis is not required to be up: readiness follows it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	m := metrics.New()
	tlsFiles, err := loadTLS(cfg, log, m)
	if err != nil {
		return nil, err
	}
	// Tracing is configured by the standard OTEL_* variables alone; with no
	// exporter endpoint it is off and nothing below is instrumented.
	tracing, err := telemetry.Setup(ctx, log)
	if err != nil {
		return nil, err
	}
	redis.SetLogger(redisLogger{log: log})
	client, stopRedis, err := newRedisClient(cfg, log)
	if err != nil {
		_ = tracing.Shutdown(ctx)
		return nil, err
	}
	if stop := stopRedis; tracing.Enabled() {
		// Every exit below, and Run after the drain, calls stopRedis: it
		// stops the tracer provider too.
		stopRedis = func() {
			stop()
			// Last, so the spans of the drain are flushed too.
			// New's context may already be done at shutdown: keep its values only.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
			defer cancel()
			if err := tracing.Shutdown(sctx); err != nil {
				log.Warn("traces not flushed", slog.String("error", err.Error()))
			}
		}
		if err := storage.InstrumentTracing(client, tracing.TracerProvider()); err != nil {
			stopRedis()
			return nil, err
		}
	}
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

	authn, err := newAuthenticator(cfg, log, m)
	if err != nil {
		stopRedis()
		return nil, err
	}
	limits, err := ratelimit.Parse(cfg.RateLimits)
	if err != nil { // Validate has already checked it
		stopRedis()
		return nil, err
	}

	grpcSrv := grpctransport.NewServer(grpctransport.ServerConfig{
		Logger:        log,
		Service:       grpctransport.NewService(repo, mon, ratelimit.New(client, limits), nil),
		Health:        hs,
		Reflection:    cfg.GRPCReflection,
		MaxRecvBytes:  cfg.GRPCMaxRecvBytes,
		Authenticator: authn,
		Observer:      m,
		Interceptors:  []grpc.UnaryServerInterceptor{m.GRPCInterceptor()},
		Creds:         grpcCreds(tlsFiles),
		StatsHandler:  serverTracing(tracing),
	})
	m.GRPC.InitializeMetrics(grpcSrv)

	// The JSON API reaches the gRPC server through an in-memory connection,
	// so each HTTP call passes the same interceptors as a gRPC call.
	apiLis := bufconn.Listen(1 << 20)
	apiOpts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return apiLis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if tracing.Enabled() {
		// The traceparent of the HTTP span crosses into the gRPC server span.
		apiOpts = append(apiOpts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tracing.TracerProvider()), otelgrpc.WithPropagators(telemetry.Propagator()))))
	}
	apiConn, err := grpc.NewClient("passthrough:///payments-svc", apiOpts...)
	if err != nil {
		stopRedis()
		return nil, fmt.Errorf("json api connection: %w", err)
	}
	api, err := httptransport.NewAPI(ctx, apiConn)
	if err != nil {
		_ = apiConn.Close()
		stopRedis()
		return nil, fmt.Errorf("json api: %w", err)
	}
	stopAPI := func() { _ = apiConn.Close() }
	httpSrv := newHTTPServer(log, httptransport.NewHandler(httptransport.Config{
		Logger:   log,
		Store:    repo,
		Verifier: webhook.NewVerifier(cfg.Webhook.keys(), cfg.Webhook.Tolerance, nil),
		API:      api,
		Observer: m,
		// nil when tracing is off
		TracerProvider: tracing.TracerProvider(),
		Propagators:    telemetry.Propagator(),
	}))
	adminSrv := newHTTPServer(log, httptransport.NewAdminHandler(httptransport.AdminConfig{
		Logger:   log,
		Ready:    mon.Ready,
		Metrics:  m.Handler(),
		Pprof:    cfg.Pprof,
		Observer: m,
	}))
	if cfg.Pprof {
		// A profile runs for as long as the caller asks.
		adminSrv.WriteTimeout = 0
	}
	if tlsFiles != nil {
		httpSrv.TLSConfig = tlsFiles.Config()
	}

	var lc net.ListenConfig
	var bound []net.Listener
	listen := func(name, addr string) (net.Listener, error) {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, b := range bound {
				_ = b.Close()
			}
			stopAPI()
			stopRedis()
			return nil, fmt.Errorf("listen on %s %s: %w", name, addr, err)
		}
		bound = append(bound, l)
		return l, nil
	}
	grpcLis, err := listen("PAYMENTS_GRPC_ADDR", cfg.GRPCAddr)
	if err != nil {
		return nil, err
	}
	httpLis, err := listen("PAYMENTS_HTTP_ADDR", cfg.HTTPAddr)
	if err != nil {
		return nil, err
	}
	adminLis, err := listen("PAYMENTS_ADMIN_ADDR", cfg.AdminAddr)
	if err != nil {
		return nil, err
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
		for _, b := range bound {
			_ = b.Close()
		}
		stopAPI()
		stopRedis()
		return nil, fmt.Errorf("PAYMENTS_REDIS_ACK_COMMAND is waitaof: %w", err)
	case err != nil:
		log.Debug("acknowledgement command not checked", slog.String("error", err.Error()))
	}

	return &App{
		cfg: cfg, log: log,
		grpcLis: grpcLis, httpLis: httpLis, adminLis: adminLis, apiLis: apiLis, apiConn: apiConn,
		grpcSrv: grpcSrv, httpSrv: httpSrv, adminSrv: adminSrv,
		health: hs, monitor: mon, stopRedis: stopRedis,
	}, nil
}

// tracingFlushTimeout bounds the flush of queued spans at shutdown, after
// the servers drained.
const tracingFlushTimeout = 5 * time.Second

// serverTracing is the gRPC server's span handler, or nil with tracing off.
func serverTracing(t *telemetry.Tracing) stats.Handler {
	if !t.Enabled() {
		return nil
	}
	// Probes arrive every few seconds from every kubelet: tracing them would
	// bury the payments in health checks.
	probes := filters.Any(filters.HealthCheck(), filters.FullMethodName("/payments.v1.PaymentService/Health"))
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.TracerProvider()), otelgrpc.WithPropagators(telemetry.Propagator()),
		otelgrpc.WithFilter(filters.Not(probes)))
}

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HTTPAddr is the bound public HTTP address (the webhook).
func (a *App) HTTPAddr() net.Addr { return a.httpLis.Addr() }

// AdminAddr is the bound admin HTTP address (metrics, probes, pprof).
func (a *App) AdminAddr() net.Addr { return a.adminLis.Addr() }

func newHTTPServer(log *slog.Logger, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

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
	a.log.Info("admin server listening", slog.String("addr", a.adminLis.Addr().String()),
		slog.Bool("pprof", a.cfg.Pprof))

	serveErr := make(chan error, 4)
	go func() {
		if err := a.grpcSrv.Serve(a.grpcLis); err != nil {
			serveErr <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	go func() {
		if err := a.grpcSrv.Serve(a.apiLis); err != nil {
			serveErr <- fmt.Errorf("grpc server for the json api: %w", err)
		}
	}()
	serveHTTP := func(name string, srv *http.Server, lis net.Listener) {
		serve := srv.Serve
		if srv.TLSConfig != nil {
			// The certificate comes from TLSConfig, not from files named here.
			serve = func(l net.Listener) error { return srv.ServeTLS(l, "", "") }
		}
		if err := serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("%s server: %w", name, err)
		}
	}
	go serveHTTP("http", a.httpSrv, a.httpLis)
	go serveHTTP("admin", a.adminSrv, a.adminLis)

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
	_ = a.apiConn.Close()
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
	var httpClean atomic.Bool
	httpClean.Store(true)
	for _, srv := range []*http.Server{a.httpSrv, a.adminSrv} {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				httpClean.Store(false)
				_ = srv.Close()
			}
		})
	}
	grpcClean := true
	select {
	case <-grpcDone:
	case <-ctx.Done():
		grpcClean = false
		a.grpcSrv.Stop()
	}
	wg.Wait()
	return grpcClean && httpClean.Load()
}

// newAuthenticator builds the caller identity check: the keys file when one
// is configured, the public development key on a development server without
// one, and client certificates alone otherwise.
func newAuthenticator(cfg Config, log *slog.Logger, m *metrics.Metrics) (*auth.Authenticator, error) {
	switch {
	case cfg.Auth.KeysFile != "":
		f, err := auth.LoadKeyFile(cfg.Auth.KeysFile, auth.FileOptions{
			CheckInterval: cfg.ReloadInterval,
			OnReload: func(keys int) {
				m.ObserveReload("api_keys", true)
				log.Info("api keys reloaded", slog.Int("keys", keys))
			},
			OnError: func(err error) {
				m.ObserveReload("api_keys", false)
				log.Warn("api keys not reloaded; the keys loaded before stay in force", slog.String("error", err.Error()))
			},
		})
		if err != nil {
			return nil, fmt.Errorf("PAYMENTS_AUTH_KEYS_FILE: %w", err)
		}
		log.Info("api keys loaded", slog.Int("keys", f.Keyring().Len()))
		return auth.NewAuthenticator(f), nil
	case cfg.DevAuth():
		log.Warn("DEVELOPMENT API KEY IN USE: anyone may call as merchant " + auth.DevMerchant + "; set PAYMENTS_AUTH_KEYS_FILE for anything but a local run")
		return auth.NewAuthenticator(auth.DevKeys()), nil
	default:
		return auth.NewAuthenticator(nil), nil
	}
}

// loadTLS reads the TLS files, or returns nil when TLS is off. Reloads are
// logged; a failed one keeps the previous certificate, so it is an error to
// act on before that certificate expires.
func loadTLS(cfg Config, log *slog.Logger, m *metrics.Metrics) (*tlsfiles.Server, error) {
	c := cfg.TLS
	if !c.Enabled() {
		return nil, nil
	}
	var files *tlsfiles.Server
	files, err := tlsfiles.New(tlsfiles.Options{
		CertFile:      c.CertFile,
		KeyFile:       c.KeyFile,
		ClientCAFile:  c.ClientCAFile,
		CheckInterval: cfg.ReloadInterval,
		OnReload: func() {
			m.ObserveReload("tls", true)
			log.Info("tls files reloaded", certAttrs(files)...)
		},
		OnReloadError: func(err error) {
			m.ObserveReload("tls", false)
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
