//go:build integration

package integration

import (
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/proctest"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// TestGracefulShutdownUnderLoad sends SIGTERM to one of three replicas while
// clients keep calling all of them. Every call either succeeds or fails with
// a code a client retries on, and retrying every key through the surviving
// replicas leaves exactly one payment per key.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	const (
		replicas       = 3
		workers        = 6
		callTimeout    = 5 * time.Second
		okBeforeSignal = 60
		callsAfterGone = 6 // per worker, once the victim has exited
	)
	rs := startRedis(t, redisOpts{})
	servers := startServers(t, replicas, "PAYMENTS_REDIS_ADDRS="+rs.addr(), "PAYMENTS_SHUTDOWN_TIMEOUT=5s")
	clients := make([]paymentsv1.PaymentServiceClient, replicas)
	for i, s := range servers {
		s.waitLog("redis reachable: serving")
		clients[i] = s.client()
	}
	const victim = 0

	l := startLoad(workers, callsAfterGone, "shutdown", clients, callTimeout)
	l.waitOKs(t, okBeforeSignal)
	servers[victim].Signal(syscall.SIGTERM)
	if err := servers[victim].Wait(readyTimeout); err != nil {
		t.Errorf("replica after SIGTERM under load: %s, want exit status 0", proctest.ExitStatus(err))
	}
	l.disrupted()
	attempts := l.wait()

	retryable := map[codes.Code]bool{codes.Unavailable: true, codes.DeadlineExceeded: true, codes.Canceled: true}
	var cut int
	for _, a := range attempts {
		code := status.Code(a.err)
		switch {
		case code == codes.OK:
		case a.replica != victim:
			t.Errorf("call %s to surviving replica %d: %v, want success", a.key, a.replica, a.err)
		case a.after && code != codes.Unavailable:
			t.Errorf("call %s to the stopped replica: code %v (%v), want Unavailable", a.key, code, a.err)
		case !retryable[code]:
			t.Errorf("call %s to the stopping replica: code %v (%v), want OK or a retryable code", a.key, code, a.err)
		default:
			cut++
		}
	}
	t.Logf("%d calls, %d to the stopping replica failed retryably", len(attempts), cut)
	if cut == 0 {
		t.Errorf("no call to the stopped replica failed, want the calls made after it exited to fail with Unavailable")
	}

	// Retry every key through the survivors.
	retryAll(t, attempts, func(i int) paymentsv1.PaymentServiceClient { return clients[1+i%(replicas-1)] }, callTimeout)
	rdb := rs.client(t)
	checkPaymentCount(t, rdb, len(attempts))
	checkNoPartialRecords(t, rdb)
}
