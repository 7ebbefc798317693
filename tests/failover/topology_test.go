//go:build failover

package failover

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Loopback addresses: 127.0.0.1 is the service (and the load), 127.0.0.9 the
// harness's own connections; data nodes and sentinels get one each.
var dataIPs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"}

var sentinelIPs = []string{"127.0.0.10", "127.0.0.11", "127.0.0.12"}

const masterName = "payments"

// redisSettings is what one run configures on the data nodes.
type redisSettings struct {
	minReplicasToWrite int // min-replicas-to-write; 0 is off
	minReplicasMaxLag  int // min-replicas-max-lag, seconds
	appendfsync        string
}

func (s redisSettings) lines() []string {
	var l []string
	if s.minReplicasToWrite > 0 {
		l = append(l, "min-replicas-to-write "+strconv.Itoa(s.minReplicasToWrite),
			"min-replicas-max-lag "+strconv.Itoa(s.minReplicasMaxLag))
	}
	if s.appendfsync != "" {
		l = append(l, "appendonly yes", "appendfsync "+s.appendfsync)
	}
	return l
}

// topology is a running Redis deployment and how the service reaches it.
type topology struct {
	kind      string // sentinel, cluster or single
	data      []*node
	sentinels []*node
	env       []string // PAYMENTS_REDIS_* for the service
}

// startSentinel starts one master, two replicas and three sentinels, and
// waits until every sentinel knows both replicas and its peers.
func startSentinel(t *testing.T, s redisSettings) *topology {
	t.Helper()
	top := &topology{kind: "sentinel"}
	master := startNode(t, "master", dataIPs[0], false, s.lines()...)
	top.data = append(top.data, master)
	for i := 1; i <= 2; i++ {
		conf := append(s.lines(), "replicaof "+master.ip+" "+strconv.Itoa(master.port))
		top.data = append(top.data, startNode(t, "replica"+strconv.Itoa(i), dataIPs[i], false, conf...))
	}
	var addrs []string
	for i, ip := range sentinelIPs {
		sn := startNode(t, "sentinel"+strconv.Itoa(i+1), ip, true,
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s %s %d 2", masterName, master.ip, master.port),
			"sentinel down-after-milliseconds "+masterName+" 1000",
			"sentinel failover-timeout "+masterName+" 4000",
			"sentinel parallel-syncs "+masterName+" 2")
		top.sentinels = append(top.sentinels, sn)
		addrs = append(addrs, sn.addr())
	}
	for _, sn := range top.sentinels {
		c := sn.client()
		err := eventually(30*time.Second, func() error {
			m, err := c.Do(context.Background(), "SENTINEL", "MASTER", masterName).StringSlice()
			if err != nil {
				return err
			}
			f := pairs(m)
			if f["num-slaves"] != "2" || f["num-other-sentinels"] != "2" {
				return fmt.Errorf("%s sees %s replicas and %s other sentinels", sn.name, f["num-slaves"], f["num-other-sentinels"])
			}
			return nil
		})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledged writes can only survive a failover once the replicas
	// have finished their first sync.
	top.waitConverged(master)
	top.env = []string{
		"PAYMENTS_REDIS_MODE=sentinel",
		"PAYMENTS_REDIS_MASTER_NAME=" + masterName,
		"PAYMENTS_REDIS_ADDRS=" + strings.Join(addrs, ","),
	}
	return top
}

func pairs(kv []string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// reportedMaster is the master every sentinel agrees on, or an error.
func (top *topology) reportedMaster() (*node, error) {
	var agreed string
	for _, sn := range top.sentinels {
		c := sn.client()
		a, err := c.Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName).StringSlice()
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sn.name, err)
		}
		addr := net.JoinHostPort(a[0], a[1])
		if agreed != "" && addr != agreed {
			return nil, fmt.Errorf("sentinels disagree: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	for _, n := range top.data {
		if n.addr() == agreed {
			return n, nil
		}
	}
	return nil, fmt.Errorf("sentinels report unknown master %s", agreed)
}

// waitNewMaster waits until the sentinels agree on a master other than old,
// and that node says it is a master.
func (top *topology) waitNewMaster(old *node) *node {
	var m *node
	if err := eventually(30*time.Second, func() error {
		var err error
		if m, err = top.reportedMaster(); err != nil {
			return err
		}
		if m == old {
			return fmt.Errorf("sentinels still report %s", old.name)
		}
		if role := m.info("replication", "role"); role != "master" {
			return fmt.Errorf("%s promoted but says role %q", m.name, role)
		}
		return nil
	}); err != nil {
		top.dataT().Fatalf("no failover: %v", err)
	}
	return m
}

// waitConverged waits until every other data node replicates master.
func (top *topology) waitConverged(master *node) {
	if err := eventually(60*time.Second, func() error {
		for _, n := range top.data {
			if n == master {
				continue
			}
			if err := n.isReplicaOf(master); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		top.dataT().Fatalf("replication did not converge on %s: %v", master.name, err)
	}
}

func (top *topology) dataT() *testing.T { return top.data[0].t }

// startCluster starts three masters with one replica each.
func startCluster(t *testing.T, s redisSettings) *topology {
	t.Helper()
	top := &topology{kind: "cluster"}
	args := []string{"--cluster", "create"}
	var addrs []string
	for i, ip := range dataIPs {
		bus := freePort(t, ip)
		n := startNode(t, "node"+strconv.Itoa(i+1), ip, false, append(s.lines(),
			"cluster-enabled yes",
			"cluster-port "+strconv.Itoa(bus),
			"cluster-node-timeout 1000",
			// A replica fails over whatever its last contact with the master.
			"cluster-replica-validity-factor 0")...)
		top.data = append(top.data, n)
		args = append(args, n.addr())
		addrs = append(addrs, n.addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	top.waitClusterOK(nil)
	must(t, eventually(30*time.Second, func() error {
		for _, n := range top.data {
			if n.info("replication", "role") == "slave" && n.info("replication", "master_link_status") != "up" {
				return fmt.Errorf("%s has not synced with its master", n.name)
			}
		}
		if len(top.masters()) != 3 {
			return fmt.Errorf("%d masters, want 3", len(top.masters()))
		}
		return nil
	}))
	top.env = []string{"PAYMENTS_REDIS_MODE=cluster", "PAYMENTS_REDIS_ADDRS=" + strings.Join(addrs, ",")}
	return top
}

// waitClusterOK waits until every running node but skip reports
// cluster_state:ok and all 16384 slots served.
func (top *topology) waitClusterOK(skip *node) {
	if err := eventually(30*time.Second, func() error {
		for _, n := range top.data {
			if n == skip {
				continue
			}
			if s := n.info("cluster", "cluster_enabled"); s != "1" {
				return fmt.Errorf("%s: cluster not enabled or not answering", n.name)
			}
			c := n.client()
			ci, err := c.ClusterInfo(context.Background()).Result()
			c.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
			if !strings.Contains(ci, "cluster_state:ok") || !strings.Contains(ci, "cluster_slots_ok:16384") {
				return fmt.Errorf("%s: cluster not ok:\n%s", n.name, ci)
			}
		}
		return nil
	}); err != nil {
		top.dataT().Fatal(err)
	}
}

// masters returns the data nodes that say they are masters.
func (top *topology) masters() []*node {
	var ms []*node
	for _, n := range top.data {
		if n.info("replication", "role") == "master" {
			ms = append(ms, n)
		}
	}
	return ms
}

// replicaOf returns the running node that replicates m.
func (top *topology) replicaOf(m *node) *node {
	for _, n := range top.data {
		if n != m && n.isReplicaOf(m) == nil {
			return n
		}
	}
	return nil
}

// startSingle starts one node, for restart faults.
func startSingle(t *testing.T, s redisSettings) *topology {
	t.Helper()
	n := startNode(t, "single", dataIPs[0], false, s.lines()...)
	return &topology{kind: "single", data: []*node{n}, env: []string{"PAYMENTS_REDIS_MODE=single", "PAYMENTS_REDIS_ADDRS=" + n.addr()}}
}
