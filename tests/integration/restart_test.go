//go:build integration

package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/proctest"
	"github.com/payments-svc/payments-svc/internal/storage"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

const restartKeys = 20

// createAll creates one payment per key and returns the responses.
func createAll(t *testing.T, c paymentsv1.PaymentServiceClient, prefix string, n int) []*paymentsv1.RequestPaymentResponse {
	t.Helper()
	out := make([]*paymentsv1.RequestPaymentResponse, n)
	for i := range out {
		resp, replayed, err := call(c, keyName(prefix, i), 5*time.Second)
		if err != nil || replayed {
			t.Fatalf("create %s: replayed %v, err %v; want a new payment", keyName(prefix, i), replayed, err)
		}
		out[i] = resp
	}
	return out
}

// checkReplays replays every key and reads every payment through c: both
// must return exactly what the creation returned.
func checkReplays(t *testing.T, c paymentsv1.PaymentServiceClient, created []*paymentsv1.RequestPaymentResponse) {
	t.Helper()
	for _, want := range created {
		got, replayed, err := call(c, want.GetIdempotencyKey(), 5*time.Second)
		if err != nil {
			t.Errorf("replay %s: %v, want the original receipt", want.GetIdempotencyKey(), err)
			continue
		}
		if !replayed {
			t.Errorf("replay %s: no idempotent-replayed header, want a replay", want.GetIdempotencyKey())
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("replay %s (-original +got):\n%s", want.GetIdempotencyKey(), diff)
		}
		gp, err := getPayment(c, want.GetPaymentId())
		if err != nil {
			t.Errorf("GetPayment(%s): %v", want.GetPaymentId(), err)
			continue
		}
		if diff := cmp.Diff(wantGet(want), gp, protocmp.Transform()); diff != "" {
			t.Errorf("GetPayment(%s) (-want +got):\n%s", want.GetPaymentId(), diff)
		}
	}
}

// TestServerRestartReplaysOriginal stops a server with SIGTERM and starts a
// new process on the same Redis: the state lives in Redis only, so every
// replay still returns the original payment.
func TestServerRestartReplaysOriginal(t *testing.T) {
	rs := startRedis(t, redisOpts{})
	env := "PAYMENTS_REDIS_ADDRS=" + rs.addr()
	first := startServer(t, env)
	first.waitLog("redis reachable: serving")
	created := createAll(t, first.client(), "srv-restart", restartKeys)

	first.Signal(syscall.SIGTERM)
	if err := first.Wait(readyTimeout); err != nil {
		t.Fatalf("first server after SIGTERM: %s, want exit status 0", proctest.ExitStatus(err))
	}

	second := startServer(t, env)
	second.waitLog("redis reachable: serving")
	checkReplays(t, second.client(), created)
	checkPaymentCount(t, rs.client(t), restartKeys)
}

// TestRedisRestartWithAOF restarts Redis under a running server: with the
// append-only file on, payments and idempotency records survive, and the
// server recovers without being restarted itself (its scripts are reloaded
// after the NOSCRIPT a fresh Redis answers).
func TestRedisRestartWithAOF(t *testing.T) {
	tests := []struct {
		name  string
		fsync string
		stop  syscall.Signal
	}{
		// A clean shutdown flushes the AOF whatever the fsync policy.
		{name: "SIGTERM appendfsync everysec", fsync: "everysec", stop: syscall.SIGTERM},
		// A crash loses nothing acknowledged when every write is fsynced
		// before Redis replies.
		{name: "SIGKILL appendfsync always", fsync: "always", stop: syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRedis(t, redisOpts{aof: true, fsync: tt.fsync})
			srv := startServer(t, "PAYMENTS_REDIS_ADDRS="+rs.addr())
			srv.waitLog("redis reachable: serving")
			c, hc := srv.client(), srv.health()
			created := createAll(t, c, "aof", restartKeys)

			rs.stop(tt.stop)
			waitHealth(t, hc, readinessService, notServing, readyTimeout)
			rs.restart()
			waitHealth(t, hc, readinessService, serving, readyTimeout)
			if srv.Exited() {
				t.Fatal("server process exited during the Redis restart, want it to keep running")
			}

			rdb := rs.client(t)
			checkPaymentCount(t, rdb, restartKeys)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, p := range created {
				ttl, err := rdb.PTTL(ctx, storage.IdempotencyKey(auth.DevMerchant, p.GetIdempotencyKey())).Result()
				if err != nil || ttl <= 0 {
					t.Errorf("idempotency record of %s after restart: PTTL = %v, %v; want a positive TTL", p.GetIdempotencyKey(), ttl, err)
				}
			}
			checkReplays(t, c, created)
		})
	}
}
