//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/auth"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// merchantKeys writes a keys file granting one fresh key to each merchant
// and returns the file and the keys.
func merchantKeys(t *testing.T, merchants ...string) (string, map[string]string) {
	t.Helper()
	keys := map[string]string{}
	var file string
	for _, m := range merchants {
		k, err := auth.NewKey("test")
		if err != nil {
			t.Fatal(err)
		}
		keys[m] = k
		file += auth.Line(m, k) + "\n"
	}
	path := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, keys
}

// TestMerchantsShareNothing runs three replicas on one real Redis with two
// merchants who both send one shared idempotency key, many times at once
// through every replica: each merchant must end with exactly one payment,
// and neither may read the other's.
func TestMerchantsShareNothing(t *testing.T) {
	const (
		replicas = 3
		dups     = 12 // per merchant, spread over the replicas
	)
	rs := startRedis(t, redisOpts{})
	keysFile, keys := merchantKeys(t, "m_a", "m_b")
	servers := startServers(t, replicas, "PAYMENTS_REDIS_ADDRS="+rs.addr(), "PAYMENTS_AUTH_KEYS_FILE="+keysFile)
	clients := map[string][]paymentsv1.PaymentServiceClient{}
	for _, s := range servers {
		s.waitLog("redis reachable: serving")
		for m, k := range keys {
			clients[m] = append(clients[m], paymentsv1.NewPaymentServiceClient(s.connAs(k)))
		}
	}

	type result struct {
		id       string
		replayed bool
		err      error
	}
	results := map[string][]result{"m_a": make([]result, dups), "m_b": make([]result, dups)}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for m := range results {
		for d := range dups {
			wg.Go(func() {
				<-start
				resp, replayed, err := call(clients[m][d%replicas], "shared-key", 30*time.Second)
				results[m][d] = result{resp.GetPaymentId(), replayed, err}
			})
		}
	}
	close(start)
	wg.Wait()

	ids := map[string]string{}
	for m, rs := range results {
		var created int
		for d, r := range rs {
			if r.err != nil {
				t.Errorf("%s call %d: %v, want success", m, d, r.err)
				continue
			}
			if !r.replayed {
				created++
			}
			if ids[m] == "" {
				ids[m] = r.id
			}
			if r.id != ids[m] {
				t.Errorf("%s call %d got %s, want %s: one key, one payment per merchant", m, d, r.id, ids[m])
			}
		}
		if created != 1 {
			t.Errorf("%s: %d creations, want exactly 1", m, created)
		}
	}
	if ids["m_a"] == ids["m_b"] {
		t.Fatalf("both merchants got payment %s, want one each", ids["m_a"])
	}
	checkPaymentCount(t, rs.client(t), 2)
	checkNoPartialRecords(t, rs.client(t))

	for reader, owner := range map[string]string{"m_a": "m_b", "m_b": "m_a"} {
		for i, c := range clients[reader] {
			_, err := getPayment(c, ids[owner])
			if status.Code(err) != codes.NotFound {
				t.Errorf("%s reading %s's payment through replica %d = %v, want NotFound", reader, owner, i, err)
			}
			if got, err := getPayment(c, ids[reader]); err != nil || got.GetPaymentId() != ids[reader] {
				t.Errorf("%s reading its own payment through replica %d = %v, %v", reader, i, got, err)
			}
		}
	}
	anon := paymentsv1.NewPaymentServiceClient(servers[0].connAs("pk_test_" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	if _, _, err := call(anon, "shared-key", 5*time.Second); status.Code(err) != codes.Unauthenticated {
		t.Errorf("unknown key = %v, want Unauthenticated", err)
	}
	checkPaymentCount(t, rs.client(t), 2)
}

// TestRateLimitAcrossReplicas offers one merchant's creations to three
// replicas well above its quota and measures what was admitted: the quota
// lives in Redis, so the replicas together admit at most the rate times the
// elapsed time plus the burst. It reports the figures; the bound is
// arithmetic on what was counted, not a timing.
func TestRateLimitAcrossReplicas(t *testing.T) {
	const (
		replicas  = 3
		perSecond = 50
		burst     = 20
		workers   = 24
		calls     = 600
	)
	rs := startRedis(t, redisOpts{})
	keysFile, keys := merchantKeys(t, "m_rl")
	limits := fmt.Sprintf(`{"default":{"create":{"perSecond":%d,"burst":%d},"get":{"perSecond":0,"burst":0}}}`, perSecond, burst)
	servers := startServers(t, replicas, "PAYMENTS_REDIS_ADDRS="+rs.addr(), "PAYMENTS_AUTH_KEYS_FILE="+keysFile, "PAYMENTS_RATE_LIMITS="+limits)
	clients := make([]paymentsv1.PaymentServiceClient, replicas)
	for i, s := range servers {
		s.waitLog("redis reachable: serving")
		clients[i] = paymentsv1.NewPaymentServiceClient(s.connAs(keys["m_rl"]))
	}

	var next, admitted, refused atomic.Int64
	var other, refusedKey atomic.Value
	began := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > calls {
					return
				}
				_, _, err := call(clients[w%replicas], keyName("rl", int(i)), 10*time.Second)
				switch status.Code(err) {
				case codes.OK:
					admitted.Add(1)
				case codes.ResourceExhausted:
					refused.Add(1)
					refusedKey.Store(keyName("rl", int(i)))
				default:
					other.Store(err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	if err := other.Load(); err != nil {
		t.Fatalf("a call failed other than for quota: %v", err)
	}
	bound := float64(perSecond)*elapsed.Seconds() + burst
	t.Logf("offered %d creates in %s over %d replicas: admitted %d (%.0f/s), refused %d; quota %d/s burst %d allows at most %.0f",
		calls, elapsed.Round(time.Millisecond), replicas, admitted.Load(), float64(admitted.Load())/elapsed.Seconds(), refused.Load(), perSecond, burst, bound)
	if float64(admitted.Load()) > bound+1 {
		t.Errorf("admitted %d, want at most %.0f (rate × elapsed + burst)", admitted.Load(), bound)
	}
	if refused.Load() == 0 {
		t.Errorf("nothing was refused at %d offered creates, want the quota to bite", calls)
	}
	// Every admitted create is a payment and no refusal left anything behind.
	checkPaymentCount(t, rs.client(t), int(admitted.Load()))

	// A refused key is not burned: a client that waits as RetryInfo says
	// and retries gets a fresh payment.
	key, _ := refusedKey.Load().(string)
	for attempt := 0; ; attempt++ {
		_, replayed, err := call(clients[0], key, 10*time.Second)
		if status.Code(err) == codes.ResourceExhausted && attempt < 20 {
			time.Sleep(retryDelay(err)) // the client's back-off the server asked for, not a synchronisation
			continue
		}
		if err != nil || replayed {
			t.Errorf("refused key %s retried = %v (replayed %v), want a fresh payment", key, err, replayed)
		}
		break
	}
}

// retryDelay is the RetryInfo delay of err, or a second.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return time.Second
}
