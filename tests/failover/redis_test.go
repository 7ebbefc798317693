//go:build failover

package failover

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// controlIP is the source address of every connection the harness itself
// makes to Redis, so no partition between the service's address (127.0.0.1)
// and the Redis nodes ever cuts the harness off.
const controlIP = "127.0.0.9"

// node is one redis-server or redis-sentinel process on a loopback address of
// its own, so iptables can cut it off from some peers and not others. Its
// outgoing connections (replication, sentinel probes, the cluster bus) leave
// from that address too (bind-source-addr).
type node struct {
	t        *testing.T
	name     string
	ip       string
	port     int
	sentinel bool
	dir      string
	conf     []string // config lines beyond the common ones

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// freePort finds a port free on ip. Every node has its own address, so two
// nodes never race for one port.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNode writes the node's config and starts it; it is killed when the
// test ends.
func startNode(t *testing.T, name, ip string, sentinel bool, conf ...string) *node {
	t.Helper()
	n := &node{t: t, name: name, ip: ip, port: freePort(t, ip), sentinel: sentinel, dir: t.TempDir(), conf: conf}
	lines := []string{
		"port " + strconv.Itoa(n.port),
		"bind " + ip,
		"bind-source-addr " + ip,
		"protected-mode no",
		"dir " + n.dir,
		"logfile " + filepath.Join(n.dir, "log"),
	}
	if !sentinel {
		lines = append(lines, `save ""`)
	}
	lines = append(lines, conf...)
	// Sentinel rewrites its file with what it learns, so a restart resumes it.
	if err := os.WriteFile(n.confPath(), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.kill)
	n.start()
	return n
}

func (n *node) confPath() string { return filepath.Join(n.dir, "redis.conf") }
func (n *node) addr() string     { return net.JoinHostPort(n.ip, strconv.Itoa(n.port)) }

// start runs the process and waits until it answers PING.
func (n *node) start() {
	n.t.Helper()
	bin := "redis-server"
	if n.sentinel {
		bin = "redis-sentinel"
	}
	cmd := exec.Command(bin, n.confPath())
	// If the suite itself is killed, its Redis processes go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	c := n.client()
	defer c.Close()
	if err := eventually(20*time.Second, func() error {
		select {
		case <-done:
			return fmt.Errorf("%s exited:\n%s", n.name, n.logTail())
		default:
		}
		return c.Ping(context.Background()).Err()
	}); err != nil {
		n.t.Fatalf("%s: %v", n.name, err)
	}
}

func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// kill sends SIGKILL (after SIGCONT, in case it was stopped) and waits for the
// exit. It is a no-op for a node that is not running.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-done
}

func (n *node) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// client is a harness connection to the node, from controlIP.
func (n *node) client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         n.addr(),
		Dialer:       dialFrom(controlIP),
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   -1,
		// RESP2 keeps SENTINEL replies flat lists.
		Protocol: 2,
	})
}

func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// info returns one field of INFO section on n, or "" when n does not answer.
func (n *node) info(section, field string) string {
	c := n.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// isReplicaOf reports whether n replicates master with its link up.
func (n *node) isReplicaOf(master *node) error {
	if role := n.info("replication", "role"); role != "slave" {
		return fmt.Errorf("%s role %q, want slave", n.name, role)
	}
	if h, p := n.info("replication", "master_host"), n.info("replication", "master_port"); net.JoinHostPort(h, p) != master.addr() {
		return fmt.Errorf("%s replicates %s:%s, want %s", n.name, h, p, master.addr())
	}
	if s := n.info("replication", "master_link_status"); s != "up" {
		return fmt.Errorf("%s master link %q", n.name, s)
	}
	return nil
}

// eventually calls cond until it returns nil or timeout passes: the suite's
// only way to wait.
func eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
