//go:build integration

package integration

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// TestReplicasRaceExactlyOnce sends every key ten times at once, spread over
// three replicas sharing one Redis: each key must become exactly one payment,
// every duplicate must get the identical response, and every replica must
// read every payment.
func TestReplicasRaceExactlyOnce(t *testing.T) {
	const (
		keys     = 100
		dups     = 10
		replicas = 3
	)
	rs := startRedis(t, redisOpts{})
	servers := startServers(t, replicas, "PAYMENTS_REDIS_ADDRS="+rs.addr())
	clients := make([]paymentsv1.PaymentServiceClient, replicas)
	for i, s := range servers {
		s.waitLog("redis reachable: serving")
		clients[i] = s.client()
	}

	type result struct {
		resp     *paymentsv1.RequestPaymentResponse
		replayed bool
		err      error
	}
	results := make([][dups]result, keys)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := range keys {
		for d := range dups {
			wg.Go(func() {
				<-start
				resp, replayed, err := call(clients[(k*dups+d)%replicas], keyName("race", k), 30*time.Second)
				results[k][d] = result{resp, replayed, err}
			})
		}
	}
	close(start)
	wg.Wait()

	created := make([]*paymentsv1.RequestPaymentResponse, keys)
	for k := range keys {
		var firsts int
		for d, r := range results[k] {
			if r.err != nil {
				t.Errorf("key %d duplicate %d: %v, want success", k, d, r.err)
				continue
			}
			if !r.replayed {
				firsts++
			}
			if created[k] == nil {
				created[k] = r.resp
				continue
			}
			if diff := cmp.Diff(created[k], r.resp, protocmp.Transform()); diff != "" {
				t.Errorf("key %d duplicate %d differs from the first response (-first +got):\n%s", k, d, diff)
			}
		}
		if firsts != 1 {
			t.Errorf("key %d: %d responses without the idempotent-replayed header, want exactly 1 creation", k, firsts)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	checkPaymentCount(t, rs.client(t), keys)
	checkNoPartialRecords(t, rs.client(t))

	for k, resp := range created {
		want := wantGet(resp)
		for i, c := range clients {
			got, err := getPayment(c, resp.GetPaymentId())
			if err != nil {
				t.Errorf("GetPayment(%s) through replica %d: %v", resp.GetPaymentId(), i, err)
				continue
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("key %d: GetPayment through replica %d (-want +got):\n%s", k, i, diff)
			}
		}
	}
}
