package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// newRedisClient connects to the configured Redis, or starts the embedded
// in-process store when no address is set. The returned stop function closes
// both.
func newRedisClient(cfg Config, log *slog.Logger) (redis.UniversalClient, func(), error) {
	rc := cfg.Redis
	addrs := rc.Addrs
	var embedded *miniredis.Miniredis
	if cfg.Embedded() {
		// Validate has already refused this in production.
		m, err := miniredis.Run()
		if err != nil {
			return nil, nil, fmt.Errorf("start embedded store: %w", err)
		}
		embedded = m
		addrs = []string{m.Addr()}
		log.Warn("EMBEDDED STORE: PAYMENTS_REDIS_ADDRS is empty, so payments live in this process's memory and vanish when it exits; replicas do not share them. Set PAYMENTS_REDIS_ADDRS for anything but local development.",
			slog.String("addr", m.Addr()))
	}
	tlsCfg, err := rc.tlsConfig()
	if err != nil {
		if embedded != nil {
			embedded.Close()
		}
		return nil, nil, err
	}
	opts := &redis.UniversalOptions{
		Addrs:            addrs,
		MasterName:       rc.MasterName,
		IsClusterMode:    rc.Mode == "cluster",
		Username:         rc.Username,
		Password:         rc.Password,
		SentinelPassword: rc.SentinelPassword,
		DB:               rc.DB,
		TLSConfig:        tlsCfg,
		DialTimeout:      rc.DialTimeout,
		ReadTimeout:      rc.ReadTimeout,
		WriteTimeout:     rc.WriteTimeout,
		PoolSize:         rc.PoolSize,
		ConnMaxLifetime:  rc.ConnMaxLifetime,
		// Calls carry gRPC deadlines; honour them on the socket too, so a
		// slow Redis can never hold a call past its deadline.
		ContextTimeoutEnabled: true,
		// The handshake extras (CLIENT SETINFO, maintenance notifications)
		// are refused by Redis before 7.2 and by the embedded store, and
		// cost a round trip per connection for nothing this service uses.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	// UniversalClient picks Sentinel when a master name is set, Cluster for
	// several addresses or IsClusterMode, and a single node otherwise; an
	// explicit mode only removes what would contradict it.
	switch rc.Mode {
	case "single", "cluster":
		opts.MasterName = ""
	}
	client := redis.NewUniversalClient(opts)
	stop := func() {
		_ = client.Close()
		if embedded != nil {
			embedded.Close()
		}
	}
	return client, stop, nil
}

// redisLogger routes go-redis's own diagnostics into the structured log at
// debug level; outages are reported once by the health monitor instead.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), slog.String("component", "go-redis"))
}

// healthServices are the grpc.health.v1 service names the monitor drives:
// readiness, which follows Redis.
var healthServices = []string{"", "payments.v1.PaymentService"}

// LivenessService is the grpc.health.v1 service name for liveness and
// startup probes. It is SERVING from start until shutdown whatever Redis
// does: a Redis outage must take replicas out of rotation, not restart them.
const LivenessService = "liveness"

// monitor pings Redis on an interval and drives readiness from the answer:
// the grpc.health.v1 statuses, and Ready for the spec's Health RPC and the
// HTTP readiness probe.
type monitor struct {
	ping     func(context.Context) error
	health   *health.Server
	interval time.Duration
	log      *slog.Logger
	ready    atomic.Bool
	stopped  atomic.Bool
}

// Ready reports whether the last ping succeeded and shutdown has not begun.
func (m *monitor) Ready() bool { return m.ready.Load() && !m.stopped.Load() }

// stop marks the instance not ready for good, for the drain at shutdown.
func (m *monitor) stop() { m.stopped.Store(true) }

// check pings once and publishes the result, logging only transitions.
func (m *monitor) check(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, m.interval)
	err := m.ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the caller owns the final status
	}
	up := err == nil
	was := m.ready.Swap(up)
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if up {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, svc := range healthServices {
		m.health.SetServingStatus(svc, st)
	}
	switch {
	case up && !was:
		m.log.Info("redis reachable: serving")
	case !up && was:
		m.log.Warn("redis unreachable: not serving", slog.String("error", err.Error()))
	}
}

// run checks at once and then every interval until ctx ends.
func (m *monitor) run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
