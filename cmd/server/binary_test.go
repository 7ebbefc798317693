package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/proctest"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// testSecret is a throwaway webhook secret for tests.
const testSecret = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"

// binPath is the server binary built once for the tests that run it as a
// real process, the way a container or a kubelet does.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "payments-svc-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath, err = proctest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logWait bounds every wait for a log line or an exit.
const logWait = 20 * time.Second

func startBinary(t *testing.T, env ...string) *proctest.Proc {
	t.Helper()
	base := []string{"PAYMENTS_GRPC_ADDR=127.0.0.1:0", "PAYMENTS_HTTP_ADDR=127.0.0.1:0", "PAYMENTS_ADMIN_ADDR=127.0.0.1:0", "PAYMENTS_WEBHOOK_SECRETS=" + testSecret}
	return proctest.Start(t, binPath, append(os.Environ(), append(base, env...)...))
}

func dial(t *testing.T, addr string) paymentsv1.PaymentServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return paymentsv1.NewPaymentServiceClient(conn)
}

func runHealthcheck(addr string) error {
	return exec.Command(binPath, "healthcheck", "-addr", addr, "-timeout", "2s").Run()
}

func TestBinaryHealthcheckSubcommand(t *testing.T) {
	p := startBinary(t)
	addr := p.WaitLog("grpc server listening", logWait)["addr"].(string)
	p.WaitLog("redis reachable: serving", logWait)

	if err := runHealthcheck(addr); err != nil {
		t.Errorf("healthcheck against a serving server: %v, want exit 0", err)
	}
	p.Signal(syscall.SIGTERM)
	if err := p.Wait(logWait); err != nil {
		t.Fatalf("server exit after SIGTERM = %v, want status 0", err)
	}
	var exitErr *exec.ExitError
	if err := runHealthcheck(addr); !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("healthcheck against a stopped server = %v, want exit status 1", err)
	}
}

func TestBinaryRefusesBadConfig(t *testing.T) {
	cmd := exec.Command(binPath)
	cmd.Env = append(os.Environ(), "PAYMENTS_ENVIRONMENT=production")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() == 0 {
		t.Fatalf("production without Redis: %v, want a non-zero exit", err)
	}
	if !strings.Contains(stderr.String(), "PAYMENTS_REDIS_ADDRS") {
		t.Errorf("stderr = %q, want it to name PAYMENTS_REDIS_ADDRS", stderr.String())
	}
}

// gate is a TCP proxy in front of Redis that can hold client commands, so a
// test can keep calls in flight for as long as it needs.
type gate struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	cond    *sync.Cond
	closed  bool
	held    bool
	blocked int // connections waiting at the gate
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	g.cond = sync.NewCond(&g.mu)
	go g.serve()
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		g.closed = true
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	return g
}

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", g.target)
		if err != nil {
			c.Close()
			continue
		}
		go func() { _, _ = io.Copy(c, s); c.Close() }()
		go g.forward(c, s)
	}
}

// forward copies client to server, waiting while the gate is held.
func (g *gate) forward(c, s net.Conn) {
	defer s.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			g.mu.Lock()
			if g.held {
				// Each call holds its own pooled connection, so one blocked
				// connection is one call in flight (on its command, or on
				// the handshake of a fresh connection).
				g.blocked++
				g.cond.Broadcast()
				for g.held && !g.closed {
					g.cond.Wait()
				}
				g.blocked--
			}
			g.mu.Unlock()
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *gate) hold() { g.mu.Lock(); g.held = true; g.mu.Unlock() }

func (g *gate) release() {
	g.mu.Lock()
	g.held = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// waitHeld waits until n connections are held at the gate.
func (g *gate) waitHeld(t *testing.T, n int) {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, func() {
		g.mu.Lock()
		g.closed = true
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer timer.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.blocked < n && !g.closed {
		g.cond.Wait()
	}
	if g.blocked < n {
		t.Fatalf("only %d of %d calls reached Redis within 20s", g.blocked, n)
	}
}

// waitRefused waits until addr refuses TCP connections. "shutdown started"
// is logged before the drain closes the listeners, and a connection accepted
// in between is served like any in-flight call.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if err == nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s %v after SIGTERM: got %v, want connection refused", addr, logWait, err)
		}
	}
}

func TestBinaryGracefulShutdownDuringInFlightCalls(t *testing.T) {
	mr := miniredis.RunT(t)
	g := newGate(t, mr.Addr())
	p := startBinary(t,
		"PAYMENTS_REDIS_ADDRS="+g.ln.Addr().String(),
		"PAYMENTS_REDIS_READ_TIMEOUT=30s",
		"PAYMENTS_SHUTDOWN_TIMEOUT=20s",
		"PAYMENTS_HEALTH_INTERVAL=1h", // keep pings off the gate
	)
	addr := p.WaitLog("grpc server listening", logWait)["addr"].(string)
	p.WaitLog("redis reachable: serving", logWait)
	client := dial(t, addr)

	const inFlight = 5
	g.hold()
	results := make(chan error, inFlight)
	for i := range inFlight {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := client.RequestPayment(ctx, &paymentsv1.RequestPaymentRequest{
				AmountMinor: 100, Currency: "USD", OrderId: "o", IdempotencyKey: fmt.Sprintf("inflight-%d", i),
			})
			results <- err
		}()
	}
	g.waitHeld(t, inFlight)

	p.Signal(syscall.SIGTERM)
	p.WaitLog("shutdown started", logWait)
	waitRefused(t, addr)

	// A new connection is refused while the old calls are still running.
	late := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := late.RequestPayment(ctx, &paymentsv1.RequestPaymentRequest{
		AmountMinor: 100, Currency: "USD", OrderId: "o", IdempotencyKey: "late",
	})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("call after SIGTERM: code = %v, want Unavailable (err %v)", got, err)
	}

	g.release()
	for range inFlight {
		if err := <-results; err != nil {
			t.Errorf("in-flight call failed across shutdown: %v", err)
		}
	}
	if err := p.Wait(logWait); err != nil {
		t.Errorf("server exit = %v, want status 0", err)
	}
	// Payment keys only: the rate limiter keeps a key of its own.
	var stored []string
	for _, k := range mr.Keys() {
		if strings.HasPrefix(k, "pmt:") {
			stored = append(stored, k)
		}
	}
	if got := len(stored); got != 2*inFlight {
		t.Errorf("Redis holds %d payment keys after shutdown, want %d (every in-flight payment stored): %v", got, 2*inFlight, stored)
	}
}

// TestBinaryJSONAPIConcurrentRetries posts one Idempotency-Key five times at
// once to the real binary's public port: the gateway's in-process hop must
// keep the store's guarantee, one creation and four replays of the same
// answer.
func TestBinaryJSONAPIConcurrentRetries(t *testing.T) {
	const calls = 5
	mr := miniredis.RunT(t)
	p := startBinary(t, "PAYMENTS_REDIS_ADDRS="+mr.Addr())
	httpAddr := p.WaitLog("http server listening", logWait)["addr"].(string)
	p.WaitLog("redis reachable: serving", logWait)

	type answer struct {
		status   int
		replayed string
		location string
		body     string
		err      error
	}
	post := func() answer {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/payments",
			strings.NewReader(`{"amountMinor":"1234","currency":"USD","orderId":"order-1"}`))
		if err != nil {
			return answer{err: err}
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+auth.DevKey)
		req.Header.Set("Idempotency-Key", `"binary-concurrent-1"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), resp.Header.Get("Location"), string(body), err}
	}

	answers := make([]answer, calls)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() { <-start; answers[i] = post() })
	}
	close(start)
	wg.Wait()

	var created, replayed int
	for i, a := range answers {
		if a.err != nil || a.status != http.StatusCreated {
			t.Fatalf("POST %d: status %d, err %v, body %s; want 201", i, a.status, a.err, a.body)
		}
		switch a.replayed {
		case "":
			created++
		case "true":
			replayed++
		default:
			t.Errorf("POST %d: Idempotent-Replayed %q, want absent or \"true\"", i, a.replayed)
		}
		if a.body != answers[0].body || a.location != answers[0].location {
			t.Errorf("POST %d: Location %s body %s, want the same as POST 0: %s %s", i, a.location, a.body, answers[0].location, answers[0].body)
		}
	}
	if created != 1 || replayed != calls-1 {
		t.Errorf("got %d creations and %d replays, want 1 and %d", created, replayed, calls-1)
	}
	if !strings.HasPrefix(answers[0].location, "/v1/payments/pay_") || !strings.Contains(answers[0].body, strings.TrimPrefix(answers[0].location, "/v1/payments/")) {
		t.Errorf("Location %q, body %s: want /v1/payments/{the body's paymentId}", answers[0].location, answers[0].body)
	}
}
