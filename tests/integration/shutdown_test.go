//go:build integration

package integration

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

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

	type attempt struct {
		key     string
		replica int
		gone    bool // started after the victim had exited
		resp    *paymentsv1.RequestPaymentResponse
		err     error
	}
	var (
		mu         sync.Mutex
		attempts   []attempt
		oks        atomic.Int64
		victimGone atomic.Bool
		wg         sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			after := 0
			for i := 0; after < callsAfterGone; i++ {
				a := attempt{key: fmt.Sprintf("shutdown-%d-%04d", w, i), replica: (w + i) % replicas, gone: victimGone.Load()}
				a.resp, _, a.err = call(clients[a.replica], a.key, callTimeout)
				if a.err == nil {
					oks.Add(1)
				}
				if a.gone {
					after++
				}
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
			}
		})
	}

	if err := poll(readyTimeout, 5*time.Millisecond, func() error {
		if n := oks.Load(); n < okBeforeSignal {
			return fmt.Errorf("only %d successful calls", n)
		}
		return nil
	}); err != nil {
		t.Fatalf("load before SIGTERM: %v", err)
	}
	servers[victim].signal(syscall.SIGTERM)
	if err := servers[victim].wait(readyTimeout); err != nil {
		t.Errorf("replica after SIGTERM under load: %s, want exit status 0", exitStatus(err))
	}
	victimGone.Store(true)
	wg.Wait()

	retryable := map[codes.Code]bool{codes.Unavailable: true, codes.DeadlineExceeded: true, codes.Canceled: true}
	var cut int
	for _, a := range attempts {
		code := status.Code(a.err)
		switch {
		case code == codes.OK:
		case a.replica != victim:
			t.Errorf("call %s to surviving replica %d: %v, want success", a.key, a.replica, a.err)
		case a.gone && code != codes.Unavailable:
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

	for i, a := range attempts {
		survivor := clients[1+i%(replicas-1)]
		got, _, err := call(survivor, a.key, callTimeout)
		if err != nil {
			t.Errorf("retry %s through a survivor: %v, want success", a.key, err)
			continue
		}
		if a.err == nil {
			if diff := cmp.Diff(a.resp, got, protocmp.Transform()); diff != "" {
				t.Errorf("retry %s of a call that succeeded (-original +retry):\n%s", a.key, diff)
			}
		}
	}
	rdb := rs.client(t)
	checkPaymentCount(t, rdb, len(attempts))
	checkNoPartialRecords(t, rdb)
}
