//go:build failover

package failover

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
	"github.com/payments-svc/payments-svc/tests/failover/history"
)

// The load's shape: every worker walks its own keys, retrying each on a
// retryable code (through the other replica first) until it is acknowledged,
// and now and then repeats an acknowledged key to check that the replay
// still answers the same after the fault.
const (
	callTimeout = time.Second
	replayShare = 0.1
	// drainTimeout bounds how long a worker keeps retrying its last key
	// after the load is told to stop.
	drainTimeout = 30 * time.Second
)

type load struct {
	rec     *history.Recorder
	clients []paymentsv1.PaymentServiceClient
	prefix  string
	stop    chan struct{}
	wg      sync.WaitGroup
	acked   atomic.Int64
	calls   atomic.Int64
}

func request(key string) (*paymentsv1.RequestPaymentRequest, history.Request) {
	h := fnv.New32a()
	h.Write([]byte(key))
	amount := int64(100 + h.Sum32()%100000)
	req := history.Request{AmountMinor: amount, Currency: "EUR", OrderID: "order-" + key}
	return &paymentsv1.RequestPaymentRequest{
		AmountMinor: amount, Currency: req.Currency, OrderId: req.OrderID, IdempotencyKey: key,
	}, req
}

func retryable(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

func startLoad(workers int, prefix string, clients []paymentsv1.PaymentServiceClient) *load {
	l := &load{rec: &history.Recorder{}, clients: clients, prefix: prefix, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go l.worker(w)
	}
	return l
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *load) worker(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	var acked []string
	for n := 0; !l.stopped(); {
		key := fmt.Sprintf("%s-w%d-%d", l.prefix, w, n)
		if len(acked) > 0 && rng.Float64() < replayShare {
			key = acked[rng.IntN(len(acked))]
		} else {
			n++
		}
		if l.resolve(w, key) {
			acked = append(acked, key)
		}
	}
}

// resolve calls until key is acknowledged or refused for good, and reports
// whether it was acknowledged.
func (l *load) resolve(w int, key string) bool {
	req, hreq := request(key)
	var stoppedAt time.Time
	for attempt := 0; ; attempt++ {
		c := l.clients[(w+attempt)%len(l.clients)]
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		op := history.Op{Client: w, Key: key, Req: hreq, Start: time.Now()}
		resp, err := c.RequestPayment(ctx, req)
		cancel()
		op.End = time.Now()
		op.Code = status.Code(err)
		if err == nil {
			op.PaymentID, op.Status, op.Message = resp.GetPaymentId(), int32(resp.GetStatus()), resp.GetMessage()
			op.CreatedAt = resp.GetCreatedAt().AsTime()
		}
		l.rec.Record(op)
		l.calls.Add(1)
		if err == nil {
			l.acked.Add(1)
			return true
		}
		if !retryable(op.Code) {
			return false
		}
		if stoppedAt.IsZero() && l.stopped() {
			stoppedAt = time.Now()
		}
		if !stoppedAt.IsZero() && time.Since(stoppedAt) > drainTimeout {
			return false
		}
		// A client's backoff, not a wait for a condition.
		time.Sleep(time.Duration(min(attempt+1, 10)) * 10 * time.Millisecond)
	}
}

// waitCalls waits until n more calls have completed (whatever their outcome),
// or fails after timeout; it is how a fault is held "under load".
func (l *load) waitCalls(n int64, timeout time.Duration) error {
	target := l.calls.Load() + n
	return eventually(timeout, func() error {
		if got := l.calls.Load(); got < target {
			return fmt.Errorf("%d of %d calls", got, target)
		}
		return nil
	})
}

// waitAcked waits until n more calls have been acknowledged.
func (l *load) waitAcked(n int64, timeout time.Duration) error {
	target := l.acked.Load() + n
	return eventually(timeout, func() error {
		if got := l.acked.Load(); got < target {
			return fmt.Errorf("%d of %d acknowledged calls", got, target)
		}
		return nil
	})
}

// finish stops the load, lets every worker settle its last key, and returns
// the history.
func (l *load) finish() []history.Op {
	close(l.stop)
	l.wg.Wait()
	return l.rec.Ops()
}
