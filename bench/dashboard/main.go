// Command dashboard is the driver behind `make dashboard-png`: it draws the
// Grafana dashboard shipped with the chart (charts/payments/files/dashboard.json)
// from a real load run, for machines where Grafana cannot run.
//
// It owns one run from start to finish: it builds cmd/server, starts a real
// redis-server (AOF on, so a restart keeps the data), the real binary and a
// real Prometheus server (the binary given by -prometheus) on loopback ports
// chosen at runtime, with Prometheus scraping the server's admin /metrics
// every second under the labels namespace="payments", job="payments-admin".
// It then drives a mix of traffic that makes every panel show something:
// RequestPayment (new keys, replays, a few reused keys with another amount),
// GetPayment, JSON API POSTs and GETs, and signed provider webhooks (applied,
// redelivered, already settled, bad signatures, unknown payments), and stops
// redis-server in the middle of the run for -outage before starting it again.
//
// Afterwards it runs each panel's own PromQL, read from the dashboard file
// with $namespace, $job and $__rate_interval substituted, through Prometheus's
// /api/v1/query_range, and draws the panels in one PNG with gnuplot. The
// "Pods ready vs desired" panel needs kube-state-metrics and is left out.
// Everything it starts it stops by PID. It is never part of pass/fail.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/webhook"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// unlimited lifts the per-merchant quotas, which would otherwise shape the
// picture.
const unlimited = `{"default":{"create":{"perSecond":0,"burst":0},"get":{"perSecond":0,"burst":0}}}`

// devWebhookSecret is contract.md's dev-only secret (base64 of
// "dev-only-webhook-secret-change-me"); the server refuses to start without one.
const devWebhookSecret = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"

// The labels Prometheus puts on the scraped series, so that the dashboard's
// selectors match unchanged.
const (
	namespace = "payments"
	job       = "payments-admin"
)

func main() {
	var o options
	flag.StringVar(&o.prometheus, "prometheus", "", "path of a prometheus binary (required)")
	flag.StringVar(&o.dashboard, "dashboard", "charts/payments/files/dashboard.json", "the Grafana dashboard whose panels are drawn")
	flag.StringVar(&o.out, "out", "docs/dashboard.png", "PNG to write")
	flag.DurationVar(&o.duration, "duration", 150*time.Second, "length of the load")
	flag.DurationVar(&o.outageAt, "outage-at", 60*time.Second, "when, into the load, redis-server is stopped")
	flag.DurationVar(&o.outage, "outage", 10*time.Second, "how long redis-server stays down")
	flag.DurationVar(&o.rateInterval, "rate-interval", 15*time.Second, "what $__rate_interval stands for")
	flag.Float64Var(&o.scale, "scale", 1, "multiplies every request rate of the mix")
	flag.Parse()
	if o.prometheus == "" {
		fatal(errors.New("-prometheus is required"))
	}
	r := &run{options: o}
	err := r.run()
	r.cleanup()
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "dashboard:", err)
	os.Exit(1)
}

type options struct {
	prometheus, dashboard, out string
	duration, outageAt, outage time.Duration
	rateInterval               time.Duration
	scale                      float64
}

type run struct {
	options
	tmp   string
	procs []*proc // started processes, stopped in reverse order

	redisProc *proc
	redisArgs []string
	redisAddr string

	grpcAddr, httpAddr, adminAddr, promAddr string

	// When redis-server had exited, and when its restart answered PING:
	// the shaded band of the picture.
	downAt, upAt time.Time
}

// proc is a started process and a channel closed when it has exited.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// start starts cmd and records it for cleanup.
func (r *run) start(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	r.procs = append(r.procs, p)
	return p, nil
}

// stop sends SIGTERM to the process by its PID and waits, then SIGKILL.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (r *run) cleanup() {
	for _, p := range slices.Backward(r.procs) {
		p.stop(10 * time.Second)
	}
	r.procs = nil
	if r.tmp != "" {
		_ = os.RemoveAll(r.tmp)
	}
}

func (r *run) run() error {
	dash, err := readDashboard(r.dashboard)
	if err != nil {
		return err
	}
	if r.tmp, err = os.MkdirTemp("", "payments-dashboard-"); err != nil {
		return err
	}
	bin := filepath.Join(r.tmp, "payments-svc")
	build := exec.Command("go", "build", "-o", bin, "./cmd/server")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build ./cmd/server: %w", err)
	}
	if err := r.startRedis(); err != nil {
		return err
	}
	if err := r.startServer(bin); err != nil {
		return err
	}
	if err := r.startPrometheus(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "dashboard: redis %s, server grpc %s http %s admin %s, prometheus %s\n",
		r.redisAddr, r.grpcAddr, r.httpAddr, r.adminAddr, r.promAddr)

	start := time.Now()
	stats, err := r.load()
	if err != nil {
		return err
	}
	// One more scrape and evaluation step after the load ends.
	time.Sleep(3 * time.Second)
	end := time.Now()
	fmt.Fprintf(os.Stderr, "dashboard: load done: %s\n", stats)

	panels, err := r.queryPanels(dash, start, end)
	if err != nil {
		return err
	}
	return r.plot(panels, start, end)
}

// ---- processes ----

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *run) startRedis() error {
	dir := filepath.Join(r.tmp, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var err error
	for range 5 {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		r.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
		r.redisArgs = []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
			"--appendonly", "yes", "--appendfsync", "everysec", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}
		if err = r.redisUp(context.Background()); err == nil {
			return nil
		}
	}
	return err
}

// redisUp starts redis-server with r.redisArgs and waits for PONG.
func (r *run) redisUp(ctx context.Context) error {
	p, err := r.start(exec.Command("redis-server", r.redisArgs...))
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.redisProc = p
	rdb := redis.NewClient(&redis.Options{Addr: r.redisAddr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.exited:
			return errors.New("redis-server exited at start")
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s: no PONG within 10s: %w", r.redisAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisDown stops redis-server with SIGTERM (it writes its AOF) and waits.
func (r *run) redisDown() {
	r.redisProc.stop(10 * time.Second)
}

// startServer runs the binary and reads the bound addresses from its JSON
// log lines, as bench/run does.
func (r *run) startServer(bin string) error {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PAYMENTS_REDIS_ADDRS="+r.redisAddr, "PAYMENTS_GRPC_ADDR=127.0.0.1:0",
		"PAYMENTS_HTTP_ADDR=127.0.0.1:0", "PAYMENTS_ADMIN_ADDR=127.0.0.1:0", "PAYMENTS_LOG_LEVEL=info",
		"PAYMENTS_RATE_LIMITS="+unlimited, "PAYMENTS_WEBHOOK_SECRETS="+devWebhookSecret)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if _, err := r.start(cmd); err != nil {
		return err
	}
	type addrs struct{ grpc, http, admin string }
	ready := make(chan addrs, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var a addrs
		sent := false
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Msg {
			case "grpc server listening":
				a.grpc = l.Addr
			case "http server listening":
				a.http = l.Addr
			case "admin server listening":
				a.admin = l.Addr
			}
			if !sent && a.grpc != "" && a.http != "" && a.admin != "" {
				ready <- a
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-ready:
		r.grpcAddr, r.httpAddr, r.adminAddr = a.grpc, a.http, a.admin
	case <-time.After(30 * time.Second):
		return errors.New("payments-svc: no grpc/http/admin listening lines within 30s")
	}
	// Ready means Redis answered: wait for /readyz.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + r.adminAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("payments-svc not ready within 30s (last: %w)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *run) startPrometheus() error {
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
        labels:
          namespace: %s
`, job, r.adminAddr, namespace)
	cfgPath := filepath.Join(r.tmp, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		r.promAddr = "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(r.prometheus, "--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(r.tmp, "tsdb"), "--web.listen-address="+r.promAddr,
			"--log.level=warn")
		logf, err := os.Create(filepath.Join(r.tmp, "prometheus.log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		p, err := r.start(cmd)
		_ = logf.Close()
		if err != nil {
			return fmt.Errorf("start %s: %w", r.prometheus, err)
		}
		// Ready once the target has been scraped: up == 1.
		deadline := time.Now().Add(60 * time.Second)
		for {
			select {
			case <-p.exited:
				lastErr = fmt.Errorf("prometheus exited; its log:\n%s", tail(filepath.Join(r.tmp, "prometheus.log")))
			default:
				res, err := r.instant(`up{job="` + job + `"}`)
				if err == nil && len(res) == 1 && res[0].value == 1 {
					return nil
				}
				if err == nil {
					err = fmt.Errorf("up = %v", res)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("prometheus did not scrape %s within 60s (last: %w)", r.adminAddr, err)
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			break
		}
	}
	return lastErr
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// ---- load ----

type payment struct {
	id, key, order string
	amount         int64
}

type state struct {
	mu       sync.Mutex
	payments []payment     // created through gRPC or the JSON API
	unsettle []payment     // created, no webhook sent yet
	settled  []payment     // a webhook was applied
	events   []sentEvent   // delivered webhooks, for redeliveries
	n        atomic.Uint64 // key counter
	counts   sync.Map      // outcome name -> *atomic.Int64
}

type sentEvent struct {
	id   string
	body []byte
}

func (s *state) count(name string) {
	v, _ := s.counts.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *state) String() string {
	var parts []string
	s.counts.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func (s *state) add(p payment) {
	s.mu.Lock()
	s.payments = append(s.payments, p)
	s.unsettle = append(s.unsettle, p)
	s.mu.Unlock()
}

func (s *state) pick() (payment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.payments) == 0 {
		return payment{}, false
	}
	return s.payments[rand.IntN(len(s.payments))], true
}

// load runs the mix for r.duration, with redis-server stopped from
// r.outageAt for r.outage.
func (r *run) load() (*state, error) {
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := paymentsv1.NewPaymentServiceClient(conn)
	key, err := webhook.ParseSecret(devWebhookSecret)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	s := &state{}
	ctx, cancel := context.WithTimeout(context.Background(), r.duration)
	defer cancel()

	var wg sync.WaitGroup
	paced := func(perSecond float64, workers int, fn func(context.Context)) {
		interval := time.Duration(float64(time.Second) * float64(workers) / (perSecond * r.scale))
		for range workers {
			wg.Go(func() {
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					cctx, ccancel := context.WithTimeout(ctx, time.Second)
					fn(cctx)
					ccancel()
				}
			})
		}
	}
	paced(150, 6, func(ctx context.Context) { r.requestPayment(ctx, client, s) })
	paced(100, 4, func(ctx context.Context) { r.getPayment(ctx, client, s) })
	paced(30, 2, func(ctx context.Context) { r.apiPost(ctx, hc, s) })
	paced(20, 2, func(ctx context.Context) { r.apiGet(ctx, hc, s) })
	paced(20, 2, func(ctx context.Context) { r.webhook(ctx, hc, key, s) })

	var outageErr error
	wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.outageAt):
		}
		fmt.Fprintf(os.Stderr, "dashboard: stopping redis-server (pid %d) for %s\n", r.redisProc.cmd.Process.Pid, r.outage)
		sent := time.Now()
		r.redisDown()
		r.downAt = time.Now()
		fmt.Fprintf(os.Stderr, "dashboard: redis-server exited %s after SIGTERM\n", r.downAt.Sub(sent).Round(time.Millisecond))
		time.Sleep(r.outage)
		// The restart outlives the load's deadline if it must.
		if err := r.redisUp(context.WithoutCancel(ctx)); err != nil {
			outageErr = err
			return
		}
		r.upAt = time.Now()
		fmt.Fprintf(os.Stderr, "dashboard: redis-server back (pid %d)\n", r.redisProc.cmd.Process.Pid)
	})
	wg.Wait()
	return s, outageErr
}

func (r *run) requestPayment(ctx context.Context, c paymentsv1.PaymentServiceClient, s *state) {
	x := rand.Float64()
	var req *paymentsv1.RequestPaymentRequest
	var fresh payment
	switch p, ok := s.pick(); {
	case ok && x < 0.02: // the same key for another amount: a mismatch
		req = &paymentsv1.RequestPaymentRequest{AmountMinor: p.amount + 1, Currency: "EUR", OrderId: p.order, IdempotencyKey: p.key}
	case ok && x < 0.15: // a client retry: a replay
		req = &paymentsv1.RequestPaymentRequest{AmountMinor: p.amount, Currency: "EUR", OrderId: p.order, IdempotencyKey: p.key}
	default:
		n := s.n.Add(1)
		fresh = payment{key: fmt.Sprintf("dash-grpc-%d", n), order: fmt.Sprintf("order-%d", n), amount: 500 + rand.Int64N(20000)}
		req = &paymentsv1.RequestPaymentRequest{AmountMinor: fresh.amount, Currency: "EUR", OrderId: fresh.order, IdempotencyKey: fresh.key}
	}
	resp, err := c.RequestPayment(ctx, req)
	if err != nil {
		s.count("grpc_error")
		return
	}
	if fresh.key != "" {
		fresh.id = resp.GetPaymentId()
		s.add(fresh)
	}
	s.count("grpc_ok")
}

func (r *run) getPayment(ctx context.Context, c paymentsv1.PaymentServiceClient, s *state) {
	p, ok := s.pick()
	if !ok {
		return
	}
	if _, err := c.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: p.id}); err != nil {
		s.count("get_error")
		return
	}
	s.count("get_ok")
}

func (r *run) apiPost(ctx context.Context, hc *http.Client, s *state) {
	var p payment
	if old, ok := s.pick(); ok && rand.Float64() < 0.1 && strings.HasPrefix(old.key, "dash-api-") {
		p = old
	} else {
		n := s.n.Add(1)
		p = payment{key: fmt.Sprintf("dash-api-%d", n), order: fmt.Sprintf("order-%d", n), amount: 500 + rand.Int64N(20000)}
	}
	body := fmt.Sprintf(`{"amountMinor":"%d","currency":"EUR","orderId":%q}`, p.amount, p.order)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.httpAddr+"/v1/payments", strings.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+auth.DevKey)
	req.Header.Set("Idempotency-Key", p.key)
	resp, err := hc.Do(req)
	if err != nil {
		s.count("api_post_error")
		return
	}
	defer resp.Body.Close()
	var out struct {
		PaymentID string `json:"paymentId"`
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil {
		s.count("api_post_" + strconv.Itoa(resp.StatusCode))
		return
	}
	if p.id == "" && out.PaymentID != "" {
		p.id = out.PaymentID
		s.add(p)
	}
	s.count("api_post_201")
}

func (r *run) apiGet(ctx context.Context, hc *http.Client, s *state) {
	p, ok := s.pick()
	if !ok {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.httpAddr+"/v1/payments/"+url.PathEscape(p.id), nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+auth.DevKey)
	resp, err := hc.Do(req)
	if err != nil {
		s.count("api_get_error")
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	s.count("api_get_" + strconv.Itoa(resp.StatusCode))
}

// webhook sends one provider delivery. Most settle a payment that has none
// yet (applied); the rest are redeliveries of an event already sent
// (duplicate), a new event for a settled payment (already_settled), a wrong
// signature (invalid_signature) and an unknown payment (unknown_payment).
func (r *run) webhook(ctx context.Context, hc *http.Client, key []byte, s *state) {
	x := rand.Float64()
	s.mu.Lock()
	var ev sentEvent
	sign := key
	switch {
	case x < 0.10 && len(s.events) > 0:
		ev = s.events[rand.IntN(len(s.events))]
	case x < 0.15 && len(s.settled) > 0:
		p := s.settled[rand.IntN(len(s.settled))]
		ev = newEvent(p, "succeeded")
	case x < 0.18:
		ev = newEvent(payment{id: payments.NewID("merchant", "nobody", time.Now()), amount: 100}, "succeeded")
	case x < 0.21 && len(s.settled) > 0:
		ev = newEvent(s.settled[rand.IntN(len(s.settled))], "succeeded")
		sign = []byte("not-the-providers-secret-at-all")
	case len(s.unsettle) > 0:
		i := rand.IntN(len(s.unsettle))
		p := s.unsettle[i]
		s.unsettle[i] = s.unsettle[len(s.unsettle)-1]
		s.unsettle = s.unsettle[:len(s.unsettle)-1]
		outcome := "succeeded"
		if rand.Float64() < 0.2 {
			outcome = "failed"
		}
		ev = newEvent(p, outcome)
		s.settled = append(s.settled, p)
		s.events = append(s.events, ev)
	default:
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.httpAddr+"/v1/webhooks/provider", bytes.NewReader(ev.body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderID, ev.id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(sign, ev.id, ts, ev.body))
	resp, err := hc.Do(req)
	if err != nil {
		s.count("webhook_error")
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	s.count("webhook_" + strconv.Itoa(resp.StatusCode))
}

var eventSeq atomic.Uint64

func newEvent(p payment, outcome string) sentEvent {
	ev := map[string]any{
		"type":         "payment." + outcome,
		"payment_id":   p.id,
		"occurred_at":  time.Now().UTC().Format(time.RFC3339Nano),
		"amount_minor": p.amount,
		"currency":     "EUR",
	}
	if outcome == "failed" {
		ev["failure_reason"] = "card declined"
	}
	body, _ := json.Marshal(ev)
	return sentEvent{id: fmt.Sprintf("msg_dash_%d", eventSeq.Add(1)), body: body}
}

// ---- the dashboard's queries ----

type target struct{ Expr, LegendFormat string }

type panel struct {
	ID          int
	Type        string
	Title       string
	Targets     []target
	Panels      []panel // a row's collapsed panels
	FieldConfig struct {
		Defaults struct{ Unit string }
	}
	series []series
}

type series struct {
	name   string
	points map[int64]float64 // unix seconds -> value
}

func readDashboard(path string) ([]panel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct{ Panels []panel }
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Type != "timeseries" || len(p.Targets) == 0 {
				continue
			}
			// Pods ready vs desired comes from kube-state-metrics, which a
			// run on one machine does not have.
			if slices.ContainsFunc(p.Targets, func(t target) bool { return strings.Contains(t.Expr, "$deployment") }) {
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no timeseries panels", path)
	}
	return out, nil
}

func (r *run) substitute(expr string) string {
	return strings.NewReplacer("$namespace", namespace, "$job", job,
		"$__rate_interval", model(r.rateInterval)).Replace(expr)
}

// model prints a duration the way PromQL reads it (15s, 1m).
func model(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return strconv.Itoa(int(d/time.Second)) + "s"
}

type sample struct {
	labels map[string]string
	value  float64
}

func (r *run) api(path string, q url.Values, into any) error {
	resp, err := http.Get("http://" + r.promAddr + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status, Error string
		Data          json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s %s: %s", path, q.Get("query"), env.Error)
	}
	return json.Unmarshal(env.Data, into)
}

func (r *run) instant(query string) ([]sample, error) {
	var d struct {
		Result []struct {
			Metric map[string]string
			Value  [2]any
		}
	}
	if err := r.api("/api/v1/query", url.Values{"query": {query}}, &d); err != nil {
		return nil, err
	}
	var out []sample
	for _, res := range d.Result {
		s, _ := res.Value[1].(string)
		v, _ := strconv.ParseFloat(s, 64)
		out = append(out, sample{res.Metric, v})
	}
	return out, nil
}

var legendVar = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

func (r *run) queryPanels(panels []panel, start, end time.Time) ([]panel, error) {
	for i := range panels {
		p := &panels[i]
		for _, t := range p.Targets {
			q := url.Values{
				"query": {r.substitute(t.Expr)},
				"start": {strconv.FormatInt(start.Unix(), 10)},
				"end":   {strconv.FormatInt(end.Unix(), 10)},
				"step":  {"1"},
			}
			var d struct {
				Result []struct {
					Metric map[string]string
					Values [][2]any
				}
			}
			if err := r.api("/api/v1/query_range", q, &d); err != nil {
				return nil, fmt.Errorf("panel %q: %w", p.Title, err)
			}
			for _, res := range d.Result {
				name := legendVar.ReplaceAllStringFunc(t.LegendFormat, func(m string) string {
					return res.Metric[legendVar.FindStringSubmatch(m)[1]]
				})
				if name == "" {
					name = fmt.Sprint(res.Metric)
				}
				s := series{name: name, points: map[int64]float64{}}
				for _, v := range res.Values {
					ts, _ := v[0].(float64)
					str, _ := v[1].(string)
					f, err := strconv.ParseFloat(str, 64)
					if err != nil {
						continue
					}
					s.points[int64(ts)] = f
				}
				p.series = append(p.series, s)
			}
			fmt.Fprintf(os.Stderr, "dashboard: %s: %s -> %d series\n", p.Title, t.LegendFormat, len(d.Result))
		}
		slices.SortStableFunc(p.series, func(a, b series) int { return strings.Compare(a.name, b.name) })
	}
	return panels, nil
}

// ---- drawing ----

// scaleOf turns a Grafana unit into a multiplier and an axis label.
func scaleOf(unit string) (float64, string) {
	switch unit {
	case "s":
		return 1000, "ms"
	case "percentunit":
		return 100, "% of calls"
	case "reqps":
		return 1, "req/s"
	case "ops":
		return 1, "ops/s"
	}
	return 1, unit
}

// interesting drops series that are zero (or absent) over the whole run, as
// the pre-initialised outcome counters are, and keeps the legend readable.
func interesting(s series) bool {
	for _, v := range s.points {
		if v != 0 && !math.IsNaN(v) {
			return true
		}
	}
	return false
}

func (r *run) plot(panels []panel, start, end time.Time) error {
	dir := filepath.Join(r.tmp, "plot")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cols := 3
	rows := (len(panels) + cols - 1) / cols
	var g strings.Builder
	out, err := filepath.Abs(r.out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(&g, "set terminal pngcairo noenhanced size %d,%d font 'DejaVu Sans,9' background rgb '#ffffff'\n", 520*cols, 330*rows+40)
	fmt.Fprintf(&g, "set output %q\n", out)
	fmt.Fprintf(&g, "set datafile missing 'NaN'\nset datafile separator '\\t'\n")
	outageFrom := r.downAt.Sub(start).Seconds()
	outageTo := r.upAt.Sub(start).Seconds()
	fmt.Fprintf(&g, "set multiplot layout %d,%d title %q font ',12'\n", rows, cols,
		fmt.Sprintf("payments-svc dashboard (charts/payments/files/dashboard.json) from a real %s run; redis-server down %.0f-%.0f s (shaded); $__rate_interval = %s",
			r.duration, outageFrom, outageTo, model(r.rateInterval)))
	fmt.Fprintf(&g, "set grid lc rgb '#dddddd'\nset key top left font ',8' samplen 2 spacing 0.9 opaque box lc rgb '#cccccc'\n")
	fmt.Fprintf(&g, "set xlabel 'seconds into the run' offset 0,0.5\nset xrange [0:%d]\nset yrange [0:*]\nset offsets 0,0,graph 0.3,0\n", int(end.Sub(start).Seconds()))
	fmt.Fprintf(&g, "set object 1 rect from %g,graph 0 to %g,graph 1 behind fc rgb '#f4c7c3' fs solid 0.5 noborder\n", outageFrom, outageTo)
	for i, p := range panels {
		mult, ylabel := scaleOf(p.FieldConfig.Defaults.Unit)
		var keep []series
		for _, s := range p.series {
			if interesting(s) {
				keep = append(keep, s)
			}
		}
		fmt.Fprintf(&g, "set title %q font ',11'\nset ylabel %q offset 1,0\n", p.Title, ylabel)
		if len(keep) == 0 {
			fmt.Fprintf(&g, "set label 9 'no non-zero series' at graph 0.5,0.5 center\nplot NaN notitle\nunset label 9\n")
			continue
		}
		file := filepath.Join(dir, fmt.Sprintf("panel%d.tsv", i))
		if err := writeTSV(file, keep, start, end, mult); err != nil {
			return err
		}
		var plots []string
		for j, s := range keep {
			plots = append(plots, fmt.Sprintf("%q using 1:%d with lines lw 1.5 title %q", file, j+2, s.name))
		}
		fmt.Fprintf(&g, "plot %s\n", strings.Join(plots, ", \\\n  "))
	}
	fmt.Fprintf(&g, "unset multiplot\n")
	script := filepath.Join(dir, "dashboard.gp")
	if err := os.WriteFile(script, []byte(g.String()), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("gnuplot", script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gnuplot: %w", err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "dashboard: wrote %s (%d bytes, %d panels)\n", r.out, fi.Size(), len(panels))
	return nil
}

func writeTSV(path string, ss []series, start, end time.Time, mult float64) error {
	var b strings.Builder
	for ts := start.Unix(); ts <= end.Unix(); ts++ {
		fmt.Fprintf(&b, "%d", ts-start.Unix())
		for _, s := range ss {
			v, ok := s.points[ts]
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				b.WriteString("\tNaN")
				continue
			}
			fmt.Fprintf(&b, "\t%g", v*mult)
		}
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
