//go:build integration

package integration

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// attempt is one RequestPayment call made by a load.
type attempt struct {
	key     string
	replica int  // index of the client that took the call
	after   bool // started after the disruption was marked
	elapsed time.Duration
	resp    *paymentsv1.RequestPaymentResponse
	err     error
}

// load keeps workers calling RequestPayment, each with fresh keys spread over
// the clients, until every worker has made callsAfter calls after the
// disruption (a Redis outage, a SIGTERM) has been marked.
type load struct {
	mu       sync.Mutex
	attempts []attempt
	oks      atomic.Int64
	after    atomic.Bool
	wg       sync.WaitGroup
}

func startLoad(workers, callsAfter int, prefix string, clients []paymentsv1.PaymentServiceClient, callTimeout time.Duration) *load {
	l := &load{}
	for w := range workers {
		l.wg.Go(func() {
			made := 0
			for i := 0; made < callsAfter; i++ {
				a := attempt{key: fmt.Sprintf("%s-%d-%04d", prefix, w, i), replica: (w + i) % len(clients), after: l.after.Load()}
				start := time.Now()
				a.resp, _, a.err = call(clients[a.replica], a.key, callTimeout)
				a.elapsed = time.Since(start)
				if a.err == nil {
					l.oks.Add(1)
				}
				if a.after {
					made++
				}
				l.mu.Lock()
				l.attempts = append(l.attempts, a)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// waitOKs waits until n calls have succeeded, so the disruption lands on a
// service under load.
func (l *load) waitOKs(t *testing.T, n int64) {
	t.Helper()
	if err := poll(readyTimeout, 5*time.Millisecond, func() error {
		if got := l.oks.Load(); got < n {
			return fmt.Errorf("only %d successful calls", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("load before the disruption: %v", err)
	}
}

// disrupted marks every call started from now on as made after the disruption.
func (l *load) disrupted() { l.after.Store(true) }

// wait lets the workers finish and returns every attempt.
func (l *load) wait() []attempt {
	l.wg.Wait()
	return l.attempts
}

// retryAll retries every attempt's key through client(i), as a client would
// after an error: each retry must succeed, and a retry of a call that had
// succeeded must return exactly the original response.
func retryAll(t *testing.T, attempts []attempt, client func(i int) paymentsv1.PaymentServiceClient, timeout time.Duration) {
	t.Helper()
	for i, a := range attempts {
		got, _, err := call(client(i), a.key, timeout)
		if err != nil {
			t.Errorf("retry %s: %v, want success", a.key, err)
			continue
		}
		if a.err == nil {
			if diff := cmp.Diff(a.resp, got, protocmp.Transform()); diff != "" {
				t.Errorf("retry %s of a call that succeeded (-original +retry):\n%s", a.key, diff)
			}
		}
	}
}
