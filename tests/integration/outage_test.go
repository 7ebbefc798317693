//go:build integration

package integration

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// TestRedisOutage stops Redis in the middle of a load and starts it again,
// without touching the server process.
//
// While Redis is down every call must end with UNAVAILABLE before its
// deadline (a correctness bound: the server never hangs a caller), and
// readiness (grpc.health.v1, the Health RPC and /readyz) must turn
// NOT_SERVING while liveness (grpc "liveness" and /healthz) stays up. After the restart the server must serve
// again on its own within a bounded time, no half-written payment may exist,
// and retrying every key must leave exactly one payment per key.
func TestRedisOutage(t *testing.T) {
	const (
		workers       = 8
		callTimeout   = 2 * time.Second
		okBeforeStop  = 40 // successes before Redis is stopped
		callsWhenDown = 10 // calls per worker once Redis is known to be down
		recoveryBound = 15 * time.Second
	)
	rs := startRedis(t, redisOpts{aof: true, fsync: "always"})
	srv := startServer(t, "PAYMENTS_REDIS_ADDRS="+rs.addr())
	srv.waitLog("redis reachable: serving")
	c, hc := srv.client(), srv.health()

	l := startLoad(workers, callsWhenDown, "outage", []paymentsv1.PaymentServiceClient{c}, callTimeout)
	l.waitOKs(t, okBeforeStop)
	rs.stop(syscall.SIGTERM)
	l.disrupted()

	waitHealth(t, hc, readinessService, notServing, readyTimeout)
	waitHealth(t, hc, "", notServing, readyTimeout)
	waitHTTPStatus(t, srv.admin, "/readyz", http.StatusServiceUnavailable, readyTimeout)
	waitHTTPStatus(t, srv.admin, "/healthz", http.StatusOK, time.Second)
	// Liveness must not follow Redis, or an outage would restart every pod.
	waitHealth(t, hc, "liveness", serving, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if h, err := c.Health(ctx, &paymentsv1.HealthRequest{}); err != nil || h.GetStatus() != "unavailable" {
		t.Errorf("Health RPC during the outage = %v, %v; want status \"unavailable\"", h, err)
	}
	attempts := l.wait()

	var downFailures int
	for _, a := range attempts {
		if a.elapsed >= callTimeout {
			t.Errorf("call %s returned after %v, want before its %v deadline", a.key, a.elapsed, callTimeout)
		}
		code := status.Code(a.err)
		switch {
		case a.after && code != codes.Unavailable:
			t.Errorf("call %s while Redis was down: code %v (%v), want Unavailable", a.key, code, a.err)
		case !a.after && code != codes.OK && code != codes.Unavailable:
			t.Errorf("call %s as Redis stopped: code %v (%v), want OK or Unavailable", a.key, code, a.err)
		case code == codes.Unavailable:
			downFailures++
		}
	}
	if want := workers * callsWhenDown; downFailures < want {
		t.Errorf("%d calls failed with Unavailable, want at least %d (one per call made while Redis was down)", downFailures, want)
	}

	t.Logf("%d calls, %d failed with Unavailable", len(attempts), downFailures)

	rs.restart()
	took := waitHealth(t, hc, readinessService, serving, recoveryBound)
	waitHTTPStatus(t, srv.admin, "/readyz", http.StatusOK, recoveryBound)
	t.Logf("readiness back %v after redis-server answered PING (bound %v)", took, recoveryBound)
	if srv.Exited() {
		t.Fatal("server process exited during the outage, want it to keep running")
	}
	rdb := rs.client(t)
	checkNoPartialRecords(t, rdb)

	// The client's recovery: retry every key with the same request.
	retryAll(t, attempts, func(int) paymentsv1.PaymentServiceClient { return c }, 5*time.Second)
	checkPaymentCount(t, rdb, len(attempts))
	checkNoPartialRecords(t, rdb)
}
