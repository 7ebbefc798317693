//go:build integration

package integration

import (
	"context"
	"errors"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/proctest"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// binPath is the server binary, built once for the whole suite.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bin, remove, err := proctest.Prepare("apt-get install redis-server redis-tools", "redis-server", "redis-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	binPath = bin
	return m.Run()
}

// readyTimeout bounds every wait for a process to become ready.
const readyTimeout = 20 * time.Second

// poll calls cond every interval until it returns nil or timeout passes, and
// returns the last error. It is how the suite waits: never a bare sleep.
func poll(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// freePort returns a loopback port that was free a moment ago. redis-server
// cannot bind port 0 and report it, so the caller retries on a bind failure.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// redisOpts configures one redis-server process.
type redisOpts struct {
	aof     bool
	fsync   string   // appendfsync: always, everysec (default) or no
	cluster bool     // --cluster-enabled yes
	extra   []string // more command-line options
}

// redisServer is one real redis-server process on 127.0.0.1.
type redisServer struct {
	t    *testing.T
	opts redisOpts
	dir  string
	port int
	bus  int // cluster bus port, when opts.cluster

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

// startRedis starts redis-server on a free port with a temporary directory
// and waits until it answers PING. It is killed when the test ends.
func startRedis(t *testing.T, opts redisOpts) *redisServer {
	t.Helper()
	r := &redisServer{t: t, opts: opts, dir: t.TempDir()}
	t.Cleanup(r.kill)
	var lastErr error
	for range 5 {
		r.port = freePort(t)
		if opts.cluster {
			// The default bus port, port+10000, may be taken or out of range.
			r.bus = freePort(t)
		}
		if lastErr = r.start(); lastErr == nil {
			return r
		}
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) args() []string {
	a := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--dir", r.dir, "--save", "", "--daemonize", "no",
		"--logfile", filepath.Join(r.dir, "redis.log"),
	}
	if r.opts.aof {
		a = append(a, "--appendonly", "yes")
		if r.opts.fsync != "" {
			a = append(a, "--appendfsync", r.opts.fsync)
		}
	}
	if r.opts.cluster {
		a = append(a, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(r.dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(r.bus), "--cluster-node-timeout", "5000")
	}
	return append(a, r.opts.extra...)
}

// start runs the process on r.port and r.dir and waits for PING.
func (r *redisServer) start() error {
	cmd := exec.Command("redis-server", r.args()...)
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	c := redis.NewClient(&redis.Options{Addr: r.addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	return poll(readyTimeout, 10*time.Millisecond, func() error {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited during start-up; its log:\n%s", r.port, r.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	})
}

// restart starts the process again on the same port and directory, so the
// data it persisted (AOF) is loaded back.
func (r *redisServer) restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("restart redis-server: %v", err)
	}
}

// stop sends sig and waits for the process to exit.
func (r *redisServer) stop(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signal redis-server: %v", err)
	}
	select {
	case <-done:
	case <-time.After(readyTimeout):
		r.t.Fatalf("redis-server still running %s after %v", readyTimeout, sig)
	}
}

// signal sends sig to this process only, without waiting for anything: SIGSTOP
// freezes it with its connections open, as a hung or partitioned node looks
// to its peers, and SIGCONT resumes it.
func (r *redisServer) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signal redis-server: %v", err)
	}
}

// startReplica starts a redis-server replicating primary and waits until it
// acknowledges the primary's writes. ("online" in INFO comes earlier: after a
// diskless sync the primary streams only once the replica's first ACK is in.)
func startReplica(t *testing.T, primary *redisServer) *redisServer {
	t.Helper()
	replica := startRedis(t, redisOpts{extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)}})
	pc := primary.client(t)
	if err := poll(readyTimeout, 20*time.Millisecond, func() error { return probeAck(pc, "harness:replica-probe") }); err != nil {
		t.Fatalf("replica %s of %s: %v", replica.addr(), primary.addr(), err)
	}
	return replica
}

// probeAck writes key on the primary c and asks whether one replica
// acknowledges it.
func probeAck(c *redis.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// One connection, so the WAIT counts the SET.
	conn := c.Conn()
	defer conn.Close()
	if err := conn.Set(ctx, key, "1", 0).Err(); err != nil {
		return err
	}
	acked, err := conn.Wait(ctx, 1, 100*time.Millisecond).Result()
	if err != nil {
		return err
	}
	if acked != 1 {
		return errors.New("no replica acknowledges a write yet")
	}
	return nil
}

func (r *redisServer) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	if r.t.Failed() {
		r.t.Logf("redis-server %s log tail:\n%s", r.addr(), r.logTail())
	}
}

func (r *redisServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	return tail(string(b), 15)
}

func (r *redisServer) client(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// server is one real payments-svc process and the addresses it bound.
type server struct {
	*proctest.Proc
	t     *testing.T
	addr  string // bound gRPC address
	http  string // bound public HTTP address: the webhook
	admin string // bound admin HTTP address: metrics and probes
}

// baseEnv is the environment every server gets, with any PAYMENTS_* of the
// outer environment removed so the developer's settings cannot leak in.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYMENTS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"PAYMENTS_GRPC_ADDR=127.0.0.1:0",
		"PAYMENTS_HTTP_ADDR=127.0.0.1:0",
		"PAYMENTS_ADMIN_ADDR=127.0.0.1:0",
		"PAYMENTS_WEBHOOK_SECRETS="+webhookSecret,
		"PAYMENTS_LOG_LEVEL=info",
		// Outages are noticed within a few of these; kept short so the
		// suite's bounded waits stay small.
		"PAYMENTS_HEALTH_INTERVAL=100ms",
		// The suites drive load that the default quotas would throttle;
		// TestRateLimitAcrossReplicas sets its own.
		"PAYMENTS_RATE_LIMITS="+unlimited,
	)
}

// unlimited lifts every quota.
const unlimited = `{"default":{"create":{"perSecond":0,"burst":0},"get":{"perSecond":0,"burst":0}}}`

// startServer starts the binary with env added to baseEnv and waits for its
// listeners. It is killed when the test ends.
func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	s := &server{Proc: proctest.Start(t, binPath, append(baseEnv(), env...)), t: t}
	s.addr = s.waitLog("grpc server listening")["addr"].(string)
	s.http = s.waitLog("http server listening")["addr"].(string)
	s.admin = s.waitLog("admin server listening")["addr"].(string)
	return s
}

// startServers starts n replicas with the same environment.
func startServers(t *testing.T, n int, env ...string) []*server {
	t.Helper()
	out := make([]*server, n)
	for i := range out {
		out[i] = startServer(t, env...)
	}
	return out
}

// waitLog returns the first log line with the given msg, within readyTimeout.
func (s *server) waitLog(msg string) map[string]any {
	s.t.Helper()
	return s.WaitLog(msg, readyTimeout)
}

// conn dials the server's gRPC address.
func (s *server) conn() *grpc.ClientConn {
	s.t.Helper()
	return s.connAs(auth.DevKey)
}

// connAs dials the server's gRPC address, calling with key.
func (s *server) connAs(key string) *grpc.ClientConn {
	s.t.Helper()
	c, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.Bearer(key)))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

func (s *server) client() paymentsv1.PaymentServiceClient {
	return paymentsv1.NewPaymentServiceClient(s.conn())
}

func (s *server) health() healthpb.HealthClient { return healthpb.NewHealthClient(s.conn()) }

// waitHealth polls grpc.health.v1 for service until it reports want, within
// timeout, and returns how long that took.
func waitHealth(t *testing.T, hc healthpb.HealthClient, service string, want healthpb.HealthCheckResponse_ServingStatus, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	err := poll(timeout, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if resp.GetStatus() != want {
			return fmt.Errorf("status %v", resp.GetStatus())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("grpc.health.v1 %q: %v after %s, want %v", service, err, timeout, want)
	}
	return time.Since(start)
}

// readinessService is the grpc.health.v1 name readiness probes use.
const readinessService = "payments.v1.PaymentService"

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)
