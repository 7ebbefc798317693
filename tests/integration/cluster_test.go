//go:build integration

package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// startCluster builds a real Redis Cluster of n masters on loopback with
// redis-cli --cluster create and waits for cluster_state:ok on every node.
func startCluster(t *testing.T, n int) []*redisServer {
	t.Helper()
	return startClusterWithReplicas(t, n, 0)
}

// startClusterWithReplicas is startCluster with replicas per master, which
// redis-cli assigns to the nodes after the first n.
func startClusterWithReplicas(t *testing.T, n, replicas int) []*redisServer {
	t.Helper()
	nodes := make([]*redisServer, n*(1+replicas))
	args := []string{"--cluster", "create"}
	for i := range nodes {
		// Without the default 5 s delay before a replica's full sync.
		nodes[i] = startRedis(t, redisOpts{cluster: true, extra: []string{"--repl-diskless-sync-delay", "0"}})
		args = append(args, nodes[i].addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, node := range nodes {
		c := node.client(t)
		if err := poll(readyTimeout, 20*time.Millisecond, func() error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("not ok yet:\n%s", info)
			}
			return nil
		}); err != nil {
			t.Fatalf("cluster node %s: %v", node.addr(), err)
		}
	}
	return nodes
}

// waitClusterAcks waits until every master of the cluster at addrs has a
// replica that acknowledges its writes.
func waitClusterAcks(t *testing.T, addrs []string) {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		// A key in one of this master's slots.
		key := ""
		for i := 0; key == "" && i < 100000; i++ {
			owner, err := cc.MasterForKey(ctx, fmt.Sprintf("harness:replica-probe-%d", i))
			if err != nil {
				return err
			}
			if owner.Options().Addr == node.Options().Addr {
				key = fmt.Sprintf("harness:replica-probe-%d", i)
			}
		}
		if key == "" {
			return fmt.Errorf("no key hashes to master %s", node.Options().Addr)
		}
		return poll(readyTimeout, 20*time.Millisecond, func() error { return probeAck(node, key) })
	})
	if err != nil {
		t.Fatalf("cluster replicas: %v", err)
	}
}

// TestRedisCluster runs the server in cluster mode on a real three-master
// cluster: payments whose keys hash to different slots on different masters
// are created, replayed and read, and no script ever touches two slots
// (CROSSSLOT), neither the create script nor the webhook script, because
// every key of a payment carries the same hash tag.
func TestRedisCluster(t *testing.T) {
	const keys = 30
	nodes := startCluster(t, 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr()
	}
	srv := startServer(t, "PAYMENTS_REDIS_MODE=cluster", "PAYMENTS_REDIS_ADDRS="+strings.Join(addrs, ","))
	srv.waitLog("redis reachable: serving")
	c := srv.client()

	created := createAll(t, c, "cluster", keys)
	checkReplays(t, c, created)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	direct := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		direct[i] = n.client(t)
	}
	slots := map[int64]bool{}
	owners := map[string]int{}
	for _, p := range created {
		tag, err := payments.ParseID(p.GetPaymentId())
		if err != nil {
			t.Fatalf("ParseID(%s): %v", p.GetPaymentId(), err)
		}
		idemKey, payKey := storage.IdempotencyKey(auth.DevMerchant, p.GetIdempotencyKey()), storage.PaymentKey(tag, p.GetPaymentId())
		idemSlot, err1 := direct[0].ClusterKeySlot(ctx, idemKey).Result()
		paySlot, err2 := direct[0].ClusterKeySlot(ctx, payKey).Result()
		if err1 != nil || err2 != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v, %v", err1, err2)
		}
		if idemSlot != paySlot {
			t.Errorf("%s: idempotency record in slot %d, payment in slot %d; want one slot", p.GetIdempotencyKey(), idemSlot, paySlot)
		}
		slots[idemSlot] = true
		// Only the owner answers EXISTS; the others redirect with MOVED.
		var holders []string
		for i, d := range direct {
			n, err := d.Exists(ctx, idemKey, payKey).Result()
			switch {
			case err == nil && n == 2:
				holders = append(holders, addrs[i])
			case err == nil:
				t.Errorf("%s: node %s holds %d of its 2 keys, want both", p.GetIdempotencyKey(), addrs[i], n)
			case !strings.HasPrefix(err.Error(), "MOVED"):
				t.Errorf("EXISTS on %s: %v", addrs[i], err)
			}
		}
		if len(holders) != 1 {
			t.Errorf("%s: held by %v, want exactly one master", p.GetIdempotencyKey(), holders)
			continue
		}
		owners[holders[0]]++
	}
	if len(slots) < 2 {
		t.Errorf("payments landed in %d distinct slots, want several", len(slots))
	}
	if len(owners) != len(nodes) {
		t.Errorf("payments per master = %v, want payments on all %d masters", owners, len(nodes))
	}
	t.Logf("%d payments in %d slots; per master: %v", keys, len(slots), owners)

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cc.Close() })
	checkPaymentCount(t, cc, keys)
	checkNoPartialRecords(t, cc)
	// The webhook script touches the payment and its event record: both
	// carry the payment's tag, so they share a slot on whichever master.
	for i, p := range created {
		if code, outcome := postEvent(t, srv.http, fmt.Sprintf("evt_cluster_%03d", i), succeededEvent(p.GetPaymentId())); code != 200 || outcome != "applied" {
			t.Errorf("webhook for %s on the cluster: HTTP %d, outcome %q; want 200 applied", p.GetPaymentId(), code, outcome)
		}
		gp, err := getPayment(c, p.GetPaymentId())
		if err != nil || gp.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED {
			t.Errorf("GetPayment(%s) after its webhook = %v, %v; want SUCCEEDED", p.GetPaymentId(), gp.GetStatus(), err)
		}
	}
	if got := len(scanKeys(t, cc, "pmt:*:evt:*")); got != keys {
		t.Errorf("stored event records = %d, want %d", got, keys)
	}
	if srv.Logged("CROSSSLOT") {
		t.Errorf("server logged a CROSSSLOT error:\n%s", srv.LogTail(20))
	}
}
