//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/storage"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// TestReplicaAcks runs the server with PAYMENTS_REDIS_MIN_REPLICA_ACKS=1 on a
// real primary and replica. While the replica answers, creates succeed, and
// every acknowledged payment is on the replica the moment it is answered.
// While the replica is frozen (SIGSTOP: still connected, but silent, as a
// lagging or cut-off replica), nothing is acknowledged: a replay, a
// redelivered webhook, new creates and a new webhook all fail retryably and
// are counted, though the primary took the writes. Once it resumes, retries
// with the same keys replay exactly what the primary stored, and every key
// holds one payment.
func TestReplicaAcks(t *testing.T) {
	const okKeys, downKeys = 10, 10
	// Without the default 5 s delay before a diskless full sync.
	primary := startRedis(t, redisOpts{extra: []string{"--repl-diskless-sync-delay", "0"}})
	replica := startReplica(t, primary)
	srv := startServer(t,
		"PAYMENTS_REDIS_ADDRS="+primary.addr(),
		"PAYMENTS_REDIS_MIN_REPLICA_ACKS=1",
		"PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT=250ms",
		// Headroom above the wait, so a slow machine still sees the
		// replicas' count rather than a read timeout.
		"PAYMENTS_REDIS_READ_TIMEOUT=2s",
	)
	srv.waitLog("redis reachable: serving")
	c := srv.client()
	pc, rc := primary.client(t), replica.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	created := createAll(t, c, "acks-ok", okKeys)
	settled := created[okKeys-1] // by a webhook while the replica is frozen
	before := created[okKeys-2]  // by a webhook now, redelivered while frozen
	// A redelivery carries the same body (its occurred_at is fixed here).
	settledEvent, beforeEvent := succeededEvent(settled.GetPaymentId()), succeededEvent(before.GetPaymentId())
	if code, outcome := postEvent(t, srv.http, "evt_acks_before", beforeEvent); code != http.StatusOK || outcome != "applied" {
		t.Fatalf("webhook with the replica up: HTTP %d, outcome %q; want 200 applied", code, outcome)
	}
	// No polling: WAIT said the replica had them before each answer.
	checkPaymentCount(t, rc, okKeys)
	checkNoPartialRecords(t, rc)

	// A control connection whose last write the replica acknowledged: while
	// the replica is frozen its read-only commands still WAIT successfully,
	// which is what a replay that wrote nothing would do.
	ctl := redis.NewClient(&redis.Options{Addr: primary.addr(), PoolSize: 1})
	t.Cleanup(func() { ctl.Close() })
	if err := ctl.Set(ctx, "acks-probe", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := ctl.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("control WAIT = %d, %v; want 1", n, err)
	}
	waitReplicaCaughtUp(t, pc)

	shortfalls := metric(t, srv.admin, "redis_replica_acks_shortfall_total")
	calls := 0
	// A replay and a duplicate event write nothing but their touch. Each is
	// checked in a freeze of its own, while every pooled connection's last
	// write is acknowledged, so only its own write can make its WAIT fall
	// short.
	replica.signal(syscall.SIGSTOP)
	if err := ctl.Get(ctx, "acks-probe").Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := ctl.Wait(ctx, 1, 100*time.Millisecond).Result(); err != nil || n != 1 {
		t.Errorf("control: read-only command then WAIT with the replica frozen = %d, %v; want 1, which shows why replays must write", n, err)
	}
	if _, _, err := call(c, created[0].GetIdempotencyKey(), 5*time.Second); status.Code(err) != codes.Unavailable {
		t.Errorf("replay with the replica frozen: %v, want Unavailable", err)
	}
	calls++
	replica.signal(syscall.SIGCONT)
	waitReplicaCaughtUp(t, pc)

	replica.signal(syscall.SIGSTOP)
	if code, outcome := postEvent(t, srv.http, "evt_acks_before", beforeEvent); code != http.StatusServiceUnavailable {
		t.Errorf("duplicate webhook with the replica frozen: HTTP %d (%s), want 503", code, outcome)
	}
	calls++
	replica.signal(syscall.SIGCONT)
	waitReplicaCaughtUp(t, pc)

	replica.signal(syscall.SIGSTOP)
	for i := range downKeys {
		resp, _, err := call(c, keyName("acks-down", i), 5*time.Second)
		calls++
		switch {
		case err == nil:
			t.Errorf("create %s with the replica frozen was acknowledged (%s), want Unavailable", keyName("acks-down", i), resp.GetPaymentId())
		case status.Code(err) != codes.Unavailable:
			t.Errorf("create %s with the replica frozen: %v, want Unavailable", keyName("acks-down", i), err)
		case !strings.Contains(status.Convert(err).Message(), "retry with the same idempotency key"):
			t.Errorf("create %s: message %q, want it to say to retry with the same key", keyName("acks-down", i), status.Convert(err).Message())
		}
	}
	if code, outcome := postEvent(t, srv.http, "evt_acks", settledEvent); code != http.StatusServiceUnavailable {
		t.Errorf("webhook with the replica frozen: HTTP %d (%s), want 503", code, outcome)
	}
	calls++
	if got := metric(t, srv.admin, "redis_replica_acks_shortfall_total") - shortfalls; got != float64(calls) {
		t.Errorf("redis_replica_acks_shortfall_total rose by %v, want %d (one per call)", got, calls)
	}

	// The primary took every write it could not get acknowledged.
	stored := make([]string, downKeys)
	for i := range downKeys {
		rec, err := pc.Get(ctx, storage.IdempotencyKey(auth.DevMerchant, keyName("acks-down", i))).Result()
		if err == nil {
			rec, err = storage.RecordPaymentID(rec)
		}
		id := rec
		if err != nil {
			t.Fatalf("primary: payment of %s: %v, want it stored", keyName("acks-down", i), err)
		}
		stored[i] = id
	}

	replica.signal(syscall.SIGCONT)
	for i := range downKeys {
		key := keyName("acks-down", i)
		err := poll(readyTimeout, 50*time.Millisecond, func() error {
			resp, replayed, err := call(c, key, 5*time.Second)
			if err != nil {
				return err
			}
			if !replayed || resp.GetPaymentId() != stored[i] {
				t.Errorf("retry of %s: payment %s, replayed %v; want a replay of %s, the payment the primary stored", key, resp.GetPaymentId(), replayed, stored[i])
			}
			return nil
		})
		if err != nil {
			t.Fatalf("retry of %s after the replica resumed: %v", key, err)
		}
	}
	checkReplays(t, c, created[:okKeys-2])
	if code, outcome := postEvent(t, srv.http, "evt_acks", settledEvent); code != http.StatusOK || outcome != "duplicate" {
		t.Errorf("webhook redelivered after the replica resumed: HTTP %d, outcome %q; want 200 duplicate (the primary applied it)", code, outcome)
	}
	if gp, err := getPayment(c, settled.GetPaymentId()); err != nil || gp.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED {
		t.Errorf("GetPayment(%s) after the redelivery = %v, %v; want SUCCEEDED", settled.GetPaymentId(), gp.GetStatus(), err)
	}

	checkPaymentCount(t, pc, okKeys+downKeys)
	checkNoPartialRecords(t, pc)
	// Each acknowledged retry covered everything written before it.
	checkPaymentCount(t, rc, okKeys+downKeys)
	checkNoPartialRecords(t, rc)
}

// TestReplicaAcksCluster runs PAYMENTS_REDIS_MIN_REPLICA_ACKS=1 on a real
// cluster of three masters with a replica each. Each create's WAIT must go to
// the master that took its write (a keyless WAIT through the Cluster client
// would go to any node): every acknowledged payment is on its master's
// replica when answered, and with one replica frozen exactly the payments of
// its master fail, while the other masters keep acknowledging.
func TestReplicaAcksCluster(t *testing.T) {
	const keys = 30
	nodes := startClusterWithReplicas(t, 3, 1)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr()
	}
	// Replicas and their masters, in node order.
	var replicas, masters []*redisServer
	for _, n := range nodes {
		info := replicationInfo(t, n.client(t))
		port := regexp.MustCompile(`master_port:(\d+)`).FindStringSubmatch(info)
		if !strings.Contains(info, "role:slave") || port == nil {
			continue
		}
		for _, m := range nodes {
			if strconv.Itoa(m.port) == port[1] {
				replicas, masters = append(replicas, n), append(masters, m)
			}
		}
	}
	if len(replicas) != 3 {
		t.Fatalf("%d replicas with a known master, want 3", len(replicas))
	}
	waitClusterAcks(t, addrs)

	srv := startServer(t,
		"PAYMENTS_REDIS_MODE=cluster",
		"PAYMENTS_REDIS_ADDRS="+strings.Join(addrs, ","),
		"PAYMENTS_REDIS_MIN_REPLICA_ACKS=1",
		"PAYMENTS_REDIS_READ_TIMEOUT=2s",
	)
	srv.waitLog("redis reachable: serving")
	c := srv.client()
	created := createAll(t, c, "acks-cluster", keys)

	// No polling: SCAN is keyless, so a cluster replica answers it.
	total := 0
	for i, replica := range replicas {
		onMaster := scanKeys(t, masters[i].client(t), paymentPattern)
		onReplica := map[string]bool{}
		for _, k := range scanKeys(t, replica.client(t), paymentPattern) {
			onReplica[k] = true
		}
		for _, k := range onMaster {
			if !onReplica[k] {
				t.Errorf("payment %s was acknowledged, but master %s's replica %s lacks it", k, masters[i].addr(), replica.addr())
			}
		}
		total += len(onMaster)
	}
	if total != len(created) {
		t.Errorf("payments on the masters = %d, want %d", total, len(created))
	}
	checkReplays(t, c, created)

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	frozen := masters[0]
	onFrozen := func(key string) bool {
		node, err := cc.MasterForKey(ctx, storage.IdempotencyKey(auth.DevMerchant, key))
		if err != nil {
			t.Fatal(err)
		}
		return strings.HasSuffix(node.Options().Addr, ":"+strconv.Itoa(frozen.port))
	}
	replicas[0].signal(syscall.SIGSTOP)
	var failed []string
	ok := 0
	for i := range keys {
		key := keyName("acks-cluster-frozen", i)
		_, _, err := call(c, key, 5*time.Second)
		switch want := onFrozen(key); {
		case want && status.Code(err) != codes.Unavailable:
			t.Errorf("create %s on master %s, whose replica is frozen: %v, want Unavailable", key, frozen.addr(), err)
		case want:
			failed = append(failed, key)
		case err != nil:
			t.Errorf("create %s on a master whose replica answers: %v, want success", key, err)
		default:
			ok++
		}
	}
	if len(failed) == 0 || ok == 0 {
		t.Fatalf("%d keys on the frozen master's slots, %d elsewhere; want some of each", len(failed), ok)
	}
	replicas[0].signal(syscall.SIGCONT)
	for _, key := range failed {
		if err := poll(readyTimeout, 50*time.Millisecond, func() error {
			_, replayed, err := call(c, key, 5*time.Second)
			if err == nil && !replayed {
				t.Errorf("retry of %s after the replica resumed created a payment, want a replay", key)
			}
			return err
		}); err != nil {
			t.Fatalf("retry of %s after the replica resumed: %v", key, err)
		}
	}
	checkPaymentCount(t, cc, 2*keys)
	checkNoPartialRecords(t, cc)
}

func replicationInfo(t *testing.T, c *redis.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication: %v", err)
	}
	return info
}

// waitReplicaCaughtUp polls until the primary's only replica has acknowledged
// the primary's whole replication stream (replicas report once a second).
func waitReplicaCaughtUp(t *testing.T, primary *redis.Client) {
	t.Helper()
	masterOffset := regexp.MustCompile(`master_repl_offset:(\d+)`)
	replicaOffset := regexp.MustCompile(`slave0:.*offset=(\d+)`)
	err := poll(readyTimeout, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := primary.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		m, r := masterOffset.FindStringSubmatch(info), replicaOffset.FindStringSubmatch(info)
		if m == nil || r == nil || m[1] != r[1] {
			return fmt.Errorf("replica behind:\n%s", info)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// metric reads one unlabelled sample from the server's /metrics.
func metric(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
