package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/webhook"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// The CPU budget: CPU time per call of each process at a fixed offered rate.
// Throughput ratios move with whatever else the two cores run, because the
// load generator shares them; the CPU a process spends per call at a rate it
// can sustain does not, much. Every figure is the process's user+system time
// from /proc/<pid>/stat over one run divided by the calls of that run.

// cpuConcurrency is the number of calls ghz and vegeta keep in flight at most.
const cpuConcurrency = 16

// target is one server the CPU budget loads: the no-op floor, or a build of
// payments-svc (the working tree, or the -baseline revision).
type target struct {
	name      string
	pid       int
	grpc      string
	http      string
	admin     string
	seedIDs   []string // payments for GetPayment, created before the runs
	noop      bool
	settleIDs []string // pending payments for the webhook runs, used up in order
}

// cpuRow is one scenario at one rate on one target.
type cpuRow struct {
	scenario, target string
	rate             int
	calls            uint64
	errs             int
	p50, p99         float64
	svcUs            float64 // the server's CPU µs per call
	redisUs          float64 // redis-server's CPU µs per call (payments-svc only)
	cmds             string  // Redis commands per call
	scriptUs         float64 // µs per call Redis spent in scripts outside the commands they call
	svcMin, svcMax   float64 // the range of svcUs over the rounds
}

// median is the run with the median server CPU of a target's rounds (the
// upper middle one of an even number: the figure never flatters), with the
// range over all of them.
func median(runs []cpuRow) cpuRow {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b cpuRow) int { return cmp.Compare(a.svcUs, b.svcUs) })
	m := sorted[len(sorted)/2]
	m.svcMin, m.svcMax = sorted[0].svcUs, sorted[len(sorted)-1].svcUs
	return m
}

// cpuRun loads one target with one scenario at one rate and measures it.
func (b *bench) cpuRun(t *target, sc cpuScenario, rate int, d time.Duration, round, redisPid int, profile bool, profileDir string) (cpuRow, error) {
	run := fmt.Sprintf("cpu-%s-%d-%d", strings.ReplaceAll(t.name, " ", ""), rate, round)
	var prof *profiler
	if profile {
		prof = startProfiles(t.admin, d)
	}
	if err := b.rdb.ConfigResetStat(context.Background()).Err(); err != nil {
		return cpuRow{}, err
	}
	cpu0, rcpu0 := procCPU(t.pid), procCPU(redisPid)
	var r *loadReport
	var err error
	if sc.method == "" {
		r, err = b.webhookRate(t, rate, d)
	} else {
		var data string
		if data, err = sc.data(t, run); err == nil {
			r, err = b.ghzRate(sc.method, data, t.grpc, rate, d)
		}
	}
	if err != nil {
		return cpuRow{}, err
	}
	cpu, rcpu := procCPU(t.pid)-cpu0, procCPU(redisPid)-rcpu0
	row := cpuRow{scenario: sc.name, target: t.name, rate: rate, calls: r.Count, errs: r.errors(),
		p50: r.pct(50), p99: r.pct(99), svcUs: perCallUs(cpu, r.Count)}
	if !t.noop {
		cmds, err := redisCommandStats(b.rdb)
		if err != nil {
			return cpuRow{}, err
		}
		row.redisUs = perCallUs(rcpu, r.Count)
		row.cmds, row.scriptUs = cmds.perCall(r.Count)
	}
	fmt.Fprintf(os.Stderr, "bench: %s at %d/s on %s: %.0f µs/call (Redis %.0f)\n", sc.name, rate, t.name, row.svcUs, row.redisUs)
	if prof != nil {
		if err := prof.save(profileDir); err != nil {
			return cpuRow{}, err
		}
	}
	return row, nil
}

type cpuScenario struct {
	name    string
	method  string // gRPC method, or "" for the webhook
	data    func(t *target, run string) (string, error)
	creates bool
}

func cpuScenarios() []cpuScenario {
	const req = `{"amount_minor":1250,"currency":"EUR","order_id":"bench-order","idempotency_key":"%s"}`
	return []cpuScenario{
		{name: "RequestPayment, new key", method: "RequestPayment", creates: true, data: func(_ *target, run string) (string, error) {
			return fmt.Sprintf(req, run+"-{{.RequestNumber}}"), nil
		}},
		{name: "RequestPayment, replay", method: "RequestPayment", data: func(*target, string) (string, error) {
			return fmt.Sprintf(req, "seed-{{mod .RequestNumber 1000}}"), nil
		}},
		{name: "GetPayment", method: "GetPayment", data: func(t *target, _ string) (string, error) {
			ids := t.seedIDs
			if t.noop {
				ids = []string{"pay_01JDX0000000000000000000000_00000000"}
			}
			data := make([]map[string]string, len(ids))
			for i, id := range ids {
				data[i] = map[string]string{"payment_id": id}
			}
			b, err := json.Marshal(data)
			return string(b), err
		}},
		{name: "webhook, settles a payment", method: ""},
	}
}

// cpuBudget loads every target with every scenario at each rate, the targets
// one after the other within a scenario so that they see the same machine.
// With profileDir set, the last target's CPU and allocation profiles are taken
// during its new-key run at the highest rate.
func (b *bench) cpuBudget(targets []*target, rates []int, d time.Duration, profileDir string) error {
	redisPid := b.procs[0].Process.Pid
	fmt.Printf("## CPU per call at a fixed offered rate\n\n")
	fmt.Printf("ghz --rps R --concurrency %d --connections 1 (gRPC) and vegeta at rate R with %d workers (webhook), %s per run, after a warm-up.\n", cpuConcurrency, cpuConcurrency, d)
	procs := "the Go default"
	if b.gomaxprocs > 0 {
		procs = strconv.Itoa(b.gomaxprocs)
	}
	fmt.Printf("CPU is user+system time from /proc/<pid>/stat (10 ms ticks) over the run, divided by its calls. Servers' GOMAXPROCS: %s. Load average: %s.\n\n", procs, loadavg())

	// Warm-up: connections, script cache, pools, the runtime's heap size.
	// The profile starts with the load: ghz is a running process by then.
	for _, t := range targets {
		sc := cpuScenarios()[0]
		data, _ := sc.data(t, "warm-"+t.name)
		if _, err := b.ghzRate(sc.method, data, t.grpc, rates[len(rates)-1], 2*time.Second); err != nil {
			return err
		}
	}

	var rows []cpuRow
	for _, rate := range rates {
		for _, sc := range cpuScenarios() {
			if b.only != "" && !strings.Contains(sc.name, b.only) {
				continue
			}
			// Each round loads every target once, starting one further along
			// the list, so no target always runs first or right after another.
			byTarget := make([][]cpuRow, len(targets))
			for round := range b.rounds {
				for k := range targets {
					i := (k + round) % len(targets)
					row, err := b.cpuRun(targets[i], sc, rate, d, round, redisPid,
						profileDir != "" && round == 0 && i == len(targets)-1 && sc.creates && rate == rates[len(rates)-1], profileDir)
					if err != nil {
						return err
					}
					byTarget[i] = append(byTarget[i], row)
				}
			}
			for _, runs := range byTarget {
				rows = append(rows, median(runs))
			}
		}
	}

	fmt.Println("| scenario | rate/s | server | calls | errors | p50 ms | p99 ms | server CPU µs/call | ÷ no-op | redis-server CPU µs/call | Redis commands per call | Lua outside commands µs/call |")
	fmt.Println("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
	for _, r := range rows {
		ratio, redisUs, script := "", "", ""
		if floor := floorOf(rows, r); floor > 0 && r.target != "no-op" {
			ratio = fmt.Sprintf("%.2f", r.svcUs/floor)
		}
		if r.target != "no-op" {
			redisUs, script = fmt.Sprintf("%.0f", r.redisUs), fmt.Sprintf("%.1f", r.scriptUs)
		}
		fmt.Printf("| %s | %d | %s | %d | %d | %.2f | %.2f | %.0f (%.0f–%.0f) | %s | %s | %s | %s |\n", r.scenario, r.rate, r.target, r.calls, r.errs,
			r.p50, r.p99, r.svcUs, r.svcMin, r.svcMax, ratio, redisUs, orDash(r.cmds), script)
	}
	fmt.Println()
	fmt.Printf("Each figure is the median of %d runs (the server CPU range over them in brackets).\n", b.rounds)
	fmt.Println("\"÷ no-op\" divides by the no-op server's CPU per call for the same scenario and rate. \"Lua outside commands\"")
	fmt.Println("is INFO commandstats' time in EVALSHA less the time of the commands the script called: the interpreter's own cost.")
	fmt.Println()
	return nil
}

func floorOf(rows []cpuRow, r cpuRow) float64 {
	for _, f := range rows {
		if f.target == "no-op" && f.scenario == r.scenario && f.rate == r.rate {
			return f.svcUs
		}
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func perCallUs(cpu time.Duration, calls uint64) float64 {
	if calls == 0 {
		return 0
	}
	return float64(cpu) / float64(time.Microsecond) / float64(calls)
}

// ghzRate runs ghz at a fixed rate: --rps paces the calls, and
// --concurrency bounds how many are in flight.
func (b *bench) ghzRate(method, data, addr string, rate int, d time.Duration) (*loadReport, error) {
	r, err := b.runGhz(method, data, addr, cpuConcurrency, rate, d)
	if err != nil {
		return nil, err
	}
	// Calls ghz cut itself at the end of the run were never answered: they
	// are not calls the server finished.
	r.Count -= uint64(r.cut)
	return r, nil
}

// webhookRate posts signed settlement events at a fixed rate, each settling
// one pending payment of t (applied), or to the no-op's HTTP endpoint.
func (b *bench) webhookRate(t *target, rate int, d time.Duration) (*loadReport, error) {
	key, err := webhook.ParseSecret(devWebhookSecret)
	if err != nil {
		return nil, err
	}
	n := int(float64(rate)*d.Seconds()) + rate // vegeta may send a few more than rate × d
	type event struct {
		id   string
		body []byte
	}
	events := make([]event, n)
	for i := range events {
		pid := "pay_01JDX0000000000000000000000_00000000"
		if !t.noop {
			if len(t.settleIDs) == 0 {
				return nil, errors.New("webhook run: out of pending payments")
			}
			pid, t.settleIDs = t.settleIDs[0], t.settleIDs[1:]
		}
		body, _ := json.Marshal(map[string]any{
			"type": "payment.succeeded", "payment_id": pid, "amount_minor": 1250, "currency": "EUR",
			"occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		})
		events[i] = event{id: fmt.Sprintf("msg_cpu_%s_%d_%d", strings.ReplaceAll(t.name, " ", ""), rate, i), body: body}
	}
	ts := time.Now().Unix()
	url := "http://" + t.http + "/v1/webhooks/provider"
	var next atomic.Int64
	targeter := func(tgt *vegeta.Target) error {
		i := int(next.Add(1) - 1)
		if i >= len(events) {
			return vegeta.ErrNoTargets
		}
		ev := events[i]
		*tgt = vegeta.Target{Method: http.MethodPost, URL: url, Body: ev.body, Header: http.Header{
			"Content-Type":          {"application/json"},
			webhook.HeaderID:        {ev.id},
			webhook.HeaderTimestamp: {strconv.FormatInt(ts, 10)},
			webhook.HeaderSignature: {webhook.Sign(key, ev.id, ts, ev.body)},
		}}
		return nil
	}
	atk := vegeta.NewAttacker(vegeta.Workers(cpuConcurrency), vegeta.MaxWorkers(cpuConcurrency),
		vegeta.Connections(cpuConcurrency), vegeta.MaxConnections(cpuConcurrency),
		vegeta.Timeout(10*time.Second), vegeta.KeepAlive(true))
	r := &loadReport{byCode: map[string]int{}}
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, d, "webhook") {
		r.Count++
		switch {
		case res.Code >= 200 && res.Code < 300:
			r.ok = append(r.ok, res.Latency)
		case res.Code != 0:
			r.errs++
			r.byCode[strconv.Itoa(int(res.Code))]++
		default:
			r.errs++
			r.byCode[res.Error]++
		}
	}
	slices.Sort(r.ok)
	if r.errs > 0 {
		fmt.Fprintf(os.Stderr, "bench: webhook at %d/s on %s: failed requests by status %v\n", rate, t.name, r.byCode)
	}
	return r, nil
}

// seedPending creates n pending payments on t for the webhook runs, 32 calls
// at a time.
func seedPending(t *target, n int) error {
	conn, err := grpc.NewClient(t.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := paymentsv1.NewPaymentServiceClient(conn)
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := c.RequestPayment(ctx, &paymentsv1.RequestPaymentRequest{
					AmountMinor: 1250, Currency: "EUR", OrderId: "bench-order", IdempotencyKey: fmt.Sprintf("settle-%s-%d", t.name, i),
				})
				cancel()
				if err != nil {
					errs <- fmt.Errorf("seed pending payment %d: %w", i, err)
					return
				}
				ids[i] = resp.GetPaymentId()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	t.settleIDs = ids
	return nil
}

// commandStats is INFO commandstats since the last CONFIG RESETSTAT: calls
// and microseconds per command.
type commandStats map[string]struct{ calls, usec int64 }

func redisCommandStats(c *redis.Client) (commandStats, error) {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := commandStats{}
	for _, l := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(l, "cmdstat_"), ":")
		if !ok || name == "config" || name == "info" || !strings.HasPrefix(l, "cmdstat_") {
			continue
		}
		var st struct{ calls, usec int64 }
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out[name] = st
	}
	return out, nil
}

// perCall renders the commands per call and the script interpreter's own
// time per call: EVALSHA's time less that of the commands scripts called.
func (s commandStats) perCall(calls uint64) (string, float64) {
	if calls == 0 {
		return "", 0
	}
	var parts []string
	var inner int64
	for _, name := range slices.Sorted(maps.Keys(s)) {
		st := s[name]
		if per := float64(st.calls) / float64(calls); per >= 0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", name, per))
		}
		if name != "evalsha" && name != "eval" && name != "hgetall" && name != "ping" {
			inner += st.usec
		}
	}
	script := s["evalsha"].usec + s["eval"].usec
	lua := 0.0
	if script > 0 {
		lua = float64(script-inner) / float64(calls)
	}
	return strings.Join(parts, ", "), lua
}

// profiler fetches the service's CPU profile for most of a run, and its
// allocation profile at the end.
type profiler struct {
	admin string
	cpu   chan []byte
	err   chan error
}

func startProfiles(admin string, d time.Duration) *profiler {
	p := &profiler{admin: admin, cpu: make(chan []byte, 1), err: make(chan error, 1)}
	secs := max(int(d.Seconds())-1, 1)
	go func() {
		b, err := fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs))
		if err != nil {
			p.err <- err
			return
		}
		p.cpu <- b
	}()
	return p
}

func (p *profiler) save(dir string) error {
	var cpu []byte
	select {
	case cpu = <-p.cpu:
	case err := <-p.err:
		return fmt.Errorf("cpu profile: %w", err)
	}
	allocs, err := fetch("http://" + p.admin + "/debug/pprof/allocs")
	if err != nil {
		return fmt.Errorf("alloc profile: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu-service.prof"), cpu, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "allocs-service.prof"), allocs, 0o644)
}

func fetch(url string) ([]byte, error) {
	resp, err := http.Get(url) //nolint:noctx // a benchmark's own admin port
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}
