// Command run is the benchmark driver behind `make bench`. In one run it
// starts a real redis-server, the real payments-svc binary and the no-op gRPC
// server (bench/noop), loads both servers with the same ghz commands at
// several concurrencies, loads the service's JSON API (POST /v1/payments)
// with the same mix through vegeta, measures the Redis floor with
// redis-benchmark, and measures Redis memory per stored payment. It prints Markdown tables and the
// ratios of the service to the gRPC floor. It is never part of pass/fail.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// ghz is pinned like every other tool and run through the module cache.
const ghz = "github.com/bojand/ghz/cmd/ghz@v0.120.0"

// unlimited lifts the per-merchant quotas, which would otherwise be what
// the benchmark measures.
const unlimited = `{"default":{"create":{"perSecond":0,"burst":0},"get":{"perSecond":0,"burst":0}}}`

// devWebhookSecret is contract.md's dev-only secret; the server refuses to
// start without one.
const devWebhookSecret = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"

const seeds = 1000 // payments created before the runs, for replays and reads

func main() {
	duration := flag.Duration("duration", 5*time.Second, "length of each ghz run")
	concFlag := flag.String("concurrency", "1,16,64", "comma-separated ghz concurrencies")
	memN := flag.Int("memory-payments", 100_000, "payments stored to measure Redis memory per payment (0 skips)")
	suite := flag.String("suite", "all", `"all", "cpu" for the CPU budget alone, or "memory" for Redis memory per payment alone`)
	ratesFlag := flag.String("rates", "500,2000", "comma-separated offered rates (calls/s) of the CPU budget")
	cpuDuration := flag.Duration("cpu-duration", 5*time.Second, "length of each CPU budget run")
	baseline := flag.String("baseline", "", "a git revision whose server the CPU budget measures beside the working tree's, in the same run")
	profile := flag.String("profile", "", "directory for the service's CPU and allocation profiles during the CPU budget's new-key run at the highest rate")
	rounds := flag.Int("rounds", 3, "runs of every CPU budget scenario on every server; the median is reported")
	procs := flag.Int("gomaxprocs", 0, "GOMAXPROCS of every server (0: the Go default, all cores); the chart's CPU limit of 1 gives 1")
	only := flag.String("only", "", "run only the CPU budget scenarios whose name contains this")
	flag.Parse()
	conc, err := ints(*concFlag)
	if err != nil {
		fatal(fmt.Errorf("-concurrency: %w", err))
	}
	rates, err := ints(*ratesFlag)
	if err != nil {
		fatal(fmt.Errorf("-rates: %w", err))
	}
	if *suite != "all" && *suite != "cpu" && *suite != "memory" {
		fatal(fmt.Errorf("-suite %q: want all, cpu or memory", *suite))
	}
	b := &bench{duration: *duration, conc: conc, suite: *suite, rates: rates, cpuDuration: *cpuDuration, baseline: *baseline, profile: *profile, only: *only, rounds: max(*rounds, 1), gomaxprocs: *procs}
	defer b.cleanup()
	if err := b.run(*memN); err != nil {
		b.cleanup()
		fatal(err)
	}
}

func ints(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad list %q", list)
		}
		out = append(out, n)
	}
	return out, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

type bench struct {
	duration time.Duration
	conc     []int
	root     string // module root, for the proto and the Lua script
	tmp      string
	procs    []*exec.Cmd
	rdb      *redis.Client
	redis    string
	svcPid   int // the payments-svc process the scenarios load

	suite       string
	rates       []int
	cpuDuration time.Duration
	baseline    string // git revision, built from a worktree under tmp
	profile     string
	only        string // CPU budget scenario filter
	rounds      int
	gomaxprocs  int
	worktree    string
}

func (b *bench) cleanup() {
	for _, p := range b.procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	b.procs = nil
	if b.rdb != nil {
		_ = b.rdb.Close()
	}
	if b.worktree != "" {
		_ = exec.Command("git", "-C", b.root, "worktree", "remove", "--force", b.worktree).Run()
		b.worktree = ""
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
}

func (b *bench) run(memN int) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	b.root = filepath.Dir(strings.TrimSpace(string(out)))
	if b.tmp, err = os.MkdirTemp("", "payments-bench-"); err != nil {
		return err
	}
	for name, pkg := range map[string]string{"payments-svc": "./cmd/server", "noop": "./bench/noop"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(b.tmp, name), pkg)
		cmd.Dir, cmd.Stderr = b.root, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	if b.baseline != "" {
		b.worktree = filepath.Join(b.tmp, "baseline-src")
		cmd := exec.Command("git", "-C", b.root, "worktree", "add", "--detach", b.worktree, b.baseline)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("git worktree add %s: %w", b.baseline, err)
		}
		cmd = exec.Command("go", "build", "-o", filepath.Join(b.tmp, "payments-svc-baseline"), "./cmd/server")
		cmd.Dir, cmd.Stderr = b.worktree, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build baseline %s: %w", b.baseline, err)
		}
	}
	if err := b.startRedis(); err != nil {
		return err
	}
	if b.suite == "memory" {
		return b.memory(memN)
	}
	svcL, err := b.startServer(filepath.Join(b.tmp, "payments-svc"), "redis reachable: serving", b.svcEnv()...)
	if err != nil {
		return err
	}
	b.svcPid = b.procs[len(b.procs)-1].Process.Pid
	svcT := &target{name: "payments-svc", pid: b.svcPid, grpc: svcL.grpc, http: svcL.http, admin: svcL.admin}
	noopL, err := b.startServer(filepath.Join(b.tmp, "noop"), "grpc server listening")
	if err != nil {
		return err
	}
	noopT := &target{name: "no-op", pid: b.procs[len(b.procs)-1].Process.Pid, grpc: noopL.grpc, http: noopL.http, noop: true}
	if b.suite == "cpu" {
		return b.cpuSuite(noopT, svcT)
	}
	svc, noop, api := svcL.grpc, noopL.grpc, "http://"+svcL.http+"/v1/payments"
	ids, err := seed(svc)
	if err != nil {
		return err
	}
	idData := make([]map[string]string, len(ids))
	for i, id := range ids {
		idData[i] = map[string]string{"payment_id": id}
	}
	getData, _ := json.Marshal(idData)

	fmt.Printf("# payments-svc benchmark, %s\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("Load average at start: %s\n\n", loadavg())
	fmt.Printf("ghz %s, %s per run, 1 connection, Redis %s (no persistence), server log level info.\n\n", ghz, b.duration, b.redis)

	// Warm both servers up (connections, scripts, JIT-free but caches and
	// pools) with a run that is not reported.
	warm := scenario{name: "warm-up", method: "RequestPayment", data: mixData("warm")}
	for _, addr := range []string{noop, svc} {
		if _, err := b.ghz(warm, addr, 16, time.Second); err != nil {
			return err
		}
	}
	if _, err := b.httpMix(api, "http-warm", 16, time.Second); err != nil {
		return err
	}

	scenarios := []scenario{
		{name: "RequestPayment 90% new / 10% replay", method: "RequestPayment", data: ""},
		{name: "RequestPayment replay only", method: "RequestPayment", data: `{"amount_minor":1250,"currency":"EUR","order_id":"bench-order","idempotency_key":"seed-{{mod .RequestNumber 1000}}"}`},
		{name: "GetPayment", method: "GetPayment", data: string(getData)},
	}
	type pair struct{ svc, noop *loadReport }
	results := map[string]map[int]pair{}
	// The JSON API's run of the mix, by concurrency, against the same
	// server right after its gRPC run.
	httpResults := map[int]*loadReport{}
	for _, sc := range scenarios {
		results[sc.name] = map[int]pair{}
		fmt.Printf("## %s\n\n", sc.name)
		fmt.Println("| concurrency | server | requests | errors | rps | p50 ms | p95 ms | p99 ms | Redis commands per call |")
		// errors excludes the calls ghz cuts itself when a run ends; percentiles are of successful calls.
		fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---|")
		for _, c := range b.conc {
			run := sc
			if run.data == "" {
				run.data = mixData(fmt.Sprintf("c%d", c))
			}
			n, err := b.ghz(run, noop, c, b.duration)
			if err != nil {
				return err
			}
			if run.name == scenarios[0].name {
				// Fresh keys for the service, so none of them replays.
				run.data = mixData(fmt.Sprintf("svc-c%d", c))
			}
			if err := b.rdb.ConfigResetStat(context.Background()).Err(); err != nil {
				return err
			}
			cpu0 := procCPU(b.svcPid)
			s, err := b.ghz(run, svc, c, b.duration)
			if err != nil {
				return err
			}
			s.serverCPU = procCPU(b.svcPid) - cpu0
			cmds, err := redisCommandStats(b.rdb)
			if err != nil {
				return err
			}
			s.redisCmds = cmds
			results[sc.name][c] = pair{s, n}
			type row struct {
				name string
				r    *loadReport
			}
			rows := []row{{"payments-svc", s}, {"no-op", n}}
			if run.name == scenarios[0].name {
				if err := b.rdb.ConfigResetStat(context.Background()).Err(); err != nil {
					return err
				}
				cpu0 := procCPU(b.svcPid)
				h, err := b.httpMix(api, fmt.Sprintf("http-c%d", c), c, b.duration)
				if err != nil {
					return err
				}
				h.serverCPU = procCPU(b.svcPid) - cpu0
				if h.redisCmds, err = redisCommandStats(b.rdb); err != nil {
					return err
				}
				httpResults[c] = h
				rows = slices.Insert(rows, 1, row{"payments-svc JSON API", h})
			}
			for _, row := range rows {
				fmt.Printf("| %d | %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %s |\n", c, row.name, row.r.Count,
					row.r.errors(), row.r.Rps, row.r.pct(50), row.r.pct(95), row.r.pct(99), row.r.perCall())
			}
		}
		fmt.Println()
	}

	fmt.Println("Redis commands per call come from INFO commandstats, which also counts the commands a script runs:")
	fmt.Println("the round trips are the commands the server sends (EVALSHA for RequestPayment, HGETALL for GetPayment).")
	fmt.Println()
	fmt.Println("## Ratios to the gRPC floor (payments-svc ÷ no-op)")
	fmt.Println()
	fmt.Println("| scenario | concurrency | rps ratio | p99 ratio |")
	fmt.Println("|---|---:|---:|---:|")
	for _, sc := range scenarios {
		for _, c := range b.conc {
			p := results[sc.name][c]
			fmt.Printf("| %s | %d | %.2f | %.2f |\n", sc.name, c, p.svc.Rps/p.noop.Rps, p.svc.pct(99)/p.noop.pct(99))
		}
	}
	fmt.Println()
	fmt.Println("Targets at concurrency 64 for RequestPayment (mix): rps ratio >= 0.50, p99 ratio < 3.")
	fmt.Println()
	fmt.Println("## The JSON API beside gRPC (RequestPayment mix, HTTP ÷ gRPC on the same server)")
	fmt.Println()
	fmt.Printf("POST %s over HTTP/1.1 with vegeta %s as a library, closed loop: rate 0 (as fast as answered) with exactly\n", "/v1/payments", vegetaVersion())
	fmt.Println("`concurrency` workers, each on its own keep-alive connection, the same payload and 90/10 key mix as ghz.")
	fmt.Println()
	fmt.Println("| concurrency | gRPC rps | JSON API rps | rps ratio | gRPC p50 ms | JSON API p50 ms | gRPC p99 ms | JSON API p99 ms | p99 ratio | server CPU µs/call gRPC | JSON API | CPU ratio | JSON API errors | JSON API replays |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range b.conc {
		g, h := results[scenarios[0].name][c].svc, httpResults[c]
		fmt.Printf("| %d | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %d | %.1f%% |\n", c, g.Rps, h.Rps, h.Rps/g.Rps,
			g.pct(50), h.pct(50), g.pct(99), h.pct(99), h.pct(99)/g.pct(99),
			g.cpuPerCall(), h.cpuPerCall(), h.cpuPerCall()/g.cpuPerCall(), h.errors(), 100*float64(h.replays)/float64(max(len(h.ok), 1)))
	}
	fmt.Println()
	fmt.Println("JSON API replays are the 201s that carried Idempotent-Replayed: true, of all 201s; the mix asks for 10%.")
	fmt.Println("Server CPU per call is the payments-svc process's user+system time over the run (/proc, 10 ms ticks) divided")
	fmt.Println("by the calls: the load generators share the cores, so rps mostly prices the client; CPU per call prices the server.")
	fmt.Println()

	if err := b.cpuSuite(noopT, svcT); err != nil {
		return err
	}
	if err := b.experiments(); err != nil {
		return err
	}
	if err := b.redisFloor(); err != nil {
		return err
	}
	if err := b.memory(memN); err != nil {
		return err
	}
	fmt.Printf("Load average at the end: %s\n", loadavg())
	return nil
}

// memory measures Redis memory per payment with Redis's default
// hash-max-listpack-value (64 bytes: a longer field value turns a hash into
// the larger hashtable encoding) and with 128.
func (b *bench) memory(n int) error {
	if n <= 0 {
		return nil
	}
	for _, v := range []string{"64", "128"} {
		if err := b.rdb.ConfigSet(context.Background(), "hash-max-listpack-value", v).Err(); err != nil {
			return err
		}
		if err := b.memoryPerPayment(n, v); err != nil {
			return err
		}
	}
	return nil
}

// svcEnv is the environment of the payments-svc servers the suites load.
func (b *bench) svcEnv() []string {
	return []string{"PAYMENTS_REDIS_ADDRS=" + b.redis, "PAYMENTS_GRPC_ADDR=127.0.0.1:0", "PAYMENTS_LOG_LEVEL=info",
		"PAYMENTS_HTTP_ADDR=127.0.0.1:0", "PAYMENTS_ADMIN_ADDR=127.0.0.1:0", "PAYMENTS_RATE_LIMITS=" + unlimited,
		"PAYMENTS_WEBHOOK_SECRETS=" + devWebhookSecret, "PAYMENTS_PPROF=true"}
}

// cpuSuite seeds the targets of the CPU budget (the baseline's server
// started here), then measures them.
func (b *bench) cpuSuite(noop, svc *target) error {
	targets := []*target{noop}
	if b.baseline != "" {
		l, err := b.startServer(filepath.Join(b.tmp, "payments-svc-baseline"), "redis reachable: serving", b.svcEnv()...)
		if err != nil {
			return err
		}
		targets = append(targets, &target{name: "payments-svc " + b.baseline, pid: b.procs[len(b.procs)-1].Process.Pid,
			grpc: l.grpc, http: l.http, admin: l.admin})
	}
	targets = append(targets, svc)
	pending := 0
	for _, r := range b.rates {
		pending += (int(float64(r)*b.cpuDuration.Seconds()) + r) * b.rounds
	}
	for _, t := range targets[1:] {
		ids, err := seed(t.grpc)
		if err != nil {
			return err
		}
		t.seedIDs = ids
		if err := seedPending(t, pending); err != nil {
			return err
		}
	}
	if b.suite == "cpu" {
		fmt.Printf("# payments-svc CPU budget, %s\n\n", time.Now().UTC().Format(time.RFC3339))
	}
	return b.cpuBudget(targets, b.rates, b.cpuDuration, b.profile)
}

// experiments repeats the mix at the highest concurrency on servers that
// differ in one setting, to price the logging and the Redis pool size.
func (b *bench) experiments() error {
	c := b.conc[len(b.conc)-1]
	variants := []struct{ name, env string }{
		{"log level info (default)", ""},
		{"log level warn (no per-call log line)", "PAYMENTS_LOG_LEVEL=warn"},
		{"PAYMENTS_REDIS_POOL_SIZE=64", "PAYMENTS_REDIS_POOL_SIZE=64"},
	}
	fmt.Printf("## Settings that may matter, RequestPayment mix at concurrency %d\n\n", c)
	fmt.Println("| payments-svc | rps | p50 ms | p95 ms | p99 ms |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for i, v := range variants {
		// At log level warn there is no "listening" line to read the
		// address from, so these servers get a port chosen here.
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		env := []string{"PAYMENTS_REDIS_ADDRS=" + b.redis, "PAYMENTS_GRPC_ADDR=" + addr, "PAYMENTS_LOG_LEVEL=info",
			"PAYMENTS_HTTP_ADDR=127.0.0.1:0", "PAYMENTS_ADMIN_ADDR=127.0.0.1:0", "PAYMENTS_RATE_LIMITS=" + unlimited, "PAYMENTS_WEBHOOK_SECRETS=" + devWebhookSecret}
		if v.env != "" {
			env = append(env, v.env)
		}
		if err := b.startServing(filepath.Join(b.tmp, "payments-svc"), addr, env...); err != nil {
			return err
		}
		sc := scenario{name: v.name, method: "RequestPayment", data: mixData(fmt.Sprintf("exp%d", i))}
		if _, err := b.ghz(scenario{name: "warm-up", method: "RequestPayment", data: mixData(fmt.Sprintf("expwarm%d", i))}, addr, c, time.Second); err != nil {
			return err
		}
		r, err := b.ghz(sc, addr, c, b.duration)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.0f | %.2f | %.2f | %.2f |\n", v.name, r.Rps, r.pct(50), r.pct(95), r.pct(99))
		// Stop it so it takes no CPU from the next one.
		p := b.procs[len(b.procs)-1]
		_ = p.Process.Kill()
		_ = p.Wait()
		b.procs = b.procs[:len(b.procs)-1]
	}
	fmt.Println()
	return nil
}

// mixData is the ghz template for the 90/10 mix: one request in ten replays
// one of the seeded keys, the others use a key unique to the run.
func mixData(run string) string {
	key := `{{if eq (mod .RequestNumber 10) 0}}seed-{{mod .RequestNumber 1000}}{{else}}` + run + `-{{.RequestNumber}}{{end}}`
	// ghz only renders data whose top level holds a plain action, and an
	// {{if}} is not one: the empty {{print}} is there to make it render.
	return `{"amount_minor":1250,"currency":"EUR","order_id":"bench-order{{print}}","idempotency_key":"` + key + `"}`
}

func (b *bench) startRedis() error {
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--dir", b.tmp, "--logfile", filepath.Join(b.tmp, "redis.log"))
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start redis-server: %w", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = rdb.Ping(ctx).Err()
			cancel()
			select {
			case <-exited:
				err = errors.New("redis-server exited")
			default:
			}
			if err == nil || time.Now().After(deadline) || isClosed(exited) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err == nil {
			b.procs = append(b.procs, cmd)
			b.rdb, b.redis = rdb, addr
			return nil
		}
		_ = rdb.Close()
		_ = cmd.Process.Kill()
	}
	return errors.New("redis-server did not start on a free port in 5 attempts")
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// listeners are the addresses a server logged as bound.
type listeners struct{ grpc, http, admin string }

// startServer runs a server binary, waits for the log line readyMsg and
// returns the addresses from its "grpc server listening" and "http server
// listening" lines (the no-op server has no HTTP port). The rest of its
// output is drained and discarded, as a container runtime would ship it.
func (b *bench) startServer(bin, readyMsg string, env ...string) (listeners, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	if b.gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(b.gomaxprocs))
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return listeners{}, err
	}
	if err := cmd.Start(); err != nil {
		return listeners{}, err
	}
	b.procs = append(b.procs, cmd)
	type line struct{ Msg, Addr string }
	ready := make(chan listeners, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var ls listeners
		for sc.Scan() {
			var l line
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			switch l.Msg {
			case "grpc server listening":
				ls.grpc = l.Addr
			case "http server listening":
				ls.http = l.Addr
			case "admin server listening":
				ls.admin = l.Addr
			}
			if l.Msg == readyMsg {
				ready <- ls
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case ls := <-ready:
		return ls, nil
	case <-time.After(20 * time.Second):
		return listeners{}, fmt.Errorf("%s: no %q log line within 20s", bin, readyMsg)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startServing runs the server on a known address and waits until
// grpc.health.v1 reports it SERVING.
func (b *bench) startServing(bin, addr string, env ...string) error {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	b.procs = append(b.procs, cmd)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "payments.v1.PaymentService"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s not SERVING within 20s (last: %v, %w)", bin, addr, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seed creates the payments the replay and GetPayment runs use.
func seed(addr string) ([]string, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.Bearer(auth.DevKey)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := paymentsv1.NewPaymentServiceClient(conn)
	ids := make([]string, seeds)
	for i := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.RequestPayment(ctx, &paymentsv1.RequestPaymentRequest{
			AmountMinor: 1250, Currency: "EUR", OrderId: "bench-order", IdempotencyKey: fmt.Sprintf("seed-%d", i),
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("seed payment %d: %w", i, err)
		}
		ids[i] = resp.GetPaymentId()
	}
	return ids, nil
}

type scenario struct {
	name   string
	method string
	data   string
}

type loadReport struct {
	Count   uint64  `json:"count"`
	Rps     float64 `json:"rps"`
	Details []struct {
		Latency time.Duration `json:"latency"`
		Status  string        `json:"status"`
		Error   string        `json:"error"`
	} `json:"details"`

	redisCmds commandStats // Redis commands run during the run, by name

	ok      []time.Duration // latencies of the successful calls, sorted
	replays int             // successful calls answered as replays (JSON API only)
	// serverCPU is the CPU time the loaded server spent during the run.
	serverCPU time.Duration
	errs      int // failed calls, less those ghz cut itself
	cut       int // calls in flight when ghz closed its connection
	byCode    map[string]int
}

// summarise sorts out ghz's details. At the end of a --duration run ghz
// closes its connection under the calls still in flight (at most the
// concurrency); those are its own artefact, not server errors.
func (r *loadReport) summarise() {
	r.byCode = map[string]int{}
	for _, d := range r.Details {
		switch {
		case d.Status == "OK":
			r.ok = append(r.ok, d.Latency)
		case strings.Contains(d.Error, "use of closed network connection") || strings.Contains(d.Error, "client connection is closing"):
			r.cut++
		default:
			r.errs++
			r.byCode[d.Status]++
		}
	}
	slices.Sort(r.ok)
	r.Details = nil
}

// pct is the latency of successful calls at percentile p, in milliseconds.
func (r *loadReport) pct(p int) float64 {
	if len(r.ok) == 0 {
		return 0
	}
	i := (len(r.ok)*p + 99) / 100
	i = min(max(i-1, 0), len(r.ok)-1)
	return float64(r.ok[i]) / float64(time.Millisecond)
}

func (r *loadReport) errors() int { return r.errs }

// cpuPerCall is the server's CPU time per call, in microseconds.
func (r *loadReport) cpuPerCall() float64 {
	if r.Count == 0 {
		return 0
	}
	return float64(r.serverCPU) / float64(time.Microsecond) / float64(r.Count)
}

// procCPU is the user plus system time of process pid so far, from
// /proc/pid/stat, or 0 where there is no /proc. Linux reports it in clock
// ticks of USER_HZ, which is 100 on every architecture Go supports.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are plain.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// perCall is the Redis commands per call, by name ("-" for the no-op).
// Health pings (one a second) are included and negligible.
func (r *loadReport) perCall() string {
	cmds, _ := r.redisCmds.perCall(r.Count)
	return orDash(cmds)
}

func (b *bench) ghz(sc scenario, addr string, c int, d time.Duration) (*loadReport, error) {
	return b.runGhz(sc.method, sc.data, addr, c, 0, d)
}

// runGhz runs ghz against addr with c calls in flight at most, paced to rate
// calls a second (0: as fast as they are answered), and reads its report.
func (b *bench) runGhz(method, data, addr string, c, rate int, d time.Duration) (*loadReport, error) {
	args := []string{"run", ghz,
		"--insecure",
		"--proto", filepath.Join(b.root, "proto/payments/v1/payments.proto"),
		"--import-paths", filepath.Join(b.root, "proto"),
		"--call", "payments.v1.PaymentService." + method,
		"--metadata", `{"authorization":"Bearer ` + auth.DevKey + `"}`,
		"--data", data,
		"--concurrency", strconv.Itoa(c),
		"--connections", "1",
		"--duration", d.String(),
		"--timeout", "10s",
		"--format", "json",
	}
	if rate > 0 {
		args = append(args, "--rps", strconv.Itoa(rate))
	}
	cmd := exec.Command("go", append(args, addr)...)
	cmd.Dir = b.root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ghz %s c=%d rate=%d on %s: %w\n%s", method, c, rate, addr, err, stderr.String())
	}
	var r loadReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("ghz output: %w", err)
	}
	r.summarise()
	if r.errors() > 0 {
		fmt.Fprintf(os.Stderr, "bench: %s c=%d rate=%d on %s: failed calls by code %v\n", method, c, rate, addr, r.byCode)
	}
	return &r, nil
}

// vegetaVersion is the vegeta this driver was built with, as go.mod pins
// it: vegeta is a library here, not a tool run at a version of its own.
func vegetaVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/tsenart/vegeta/v12" {
				return m.Version
			}
		}
	}
	return "(unknown version)"
}

// httpMix loads POST /v1/payments at url with the 90/10 mix of mixData for
// d, closed loop at concurrency c, the way ghz loads gRPC. vegeta's rate 0
// paces nothing: its pacer hands a tick to whichever of the c workers is
// free, and with workers == max-workers it never adds one, so exactly c
// requests are in flight at any time. Keys are built per request: a fresh
// one for a new payment, and for one request in ten a seeded key with the
// seed's identical body, which is a replay.
func (b *bench) httpMix(url, run string, c int, d time.Duration) (*loadReport, error) {
	// The payload ghz sends and seed stored, in the gateway's protojson form.
	body := []byte(`{"amountMinor":"1250","currency":"EUR","orderId":"bench-order"}`)
	var n atomic.Uint64
	targeter := func(tgt *vegeta.Target) error {
		i := n.Add(1) - 1
		key := run + "-" + strconv.FormatUint(i, 10)
		if i%10 == 0 {
			key = "seed-" + strconv.FormatUint(i%seeds, 10)
		}
		*tgt = vegeta.Target{Method: http.MethodPost, URL: url, Body: body, Header: http.Header{
			"Content-Type":    {"application/json"},
			"Authorization":   {"Bearer " + auth.DevKey},
			"Idempotency-Key": {key},
		}}
		return nil
	}
	atk := vegeta.NewAttacker(
		vegeta.Workers(uint64(c)), vegeta.MaxWorkers(uint64(c)),
		vegeta.Connections(c), vegeta.MaxConnections(c),
		vegeta.Timeout(10*time.Second), vegeta.MaxBody(0), vegeta.KeepAlive(true),
	)
	r := &loadReport{byCode: map[string]int{}}
	start := time.Now()
	for res := range atk.Attack(targeter, vegeta.ConstantPacer{}, d, run) {
		r.Count++
		switch {
		case res.Code == http.StatusCreated:
			r.ok = append(r.ok, res.Latency)
			if res.Headers.Get("Idempotent-Replayed") == "true" {
				r.replays++
			}
		case res.Code != 0:
			r.errs++
			r.byCode[strconv.Itoa(int(res.Code))]++
		default:
			r.errs++
			r.byCode[res.Error]++
		}
	}
	// Like ghz's rps: every request over the whole run, including the
	// tail in which the last requests finish.
	r.Rps = float64(r.Count) / time.Since(start).Seconds()
	slices.Sort(r.ok)
	if r.errs > 0 {
		fmt.Fprintf(os.Stderr, "bench: JSON API %s c=%d: failed requests by status %v\n", run, c, r.byCode)
	}
	return r, nil
}

// redisFloor runs redis-benchmark against the same Redis: EVALSHA of a
// trivial script (the Redis floor), and EVALSHA of the real create script on
// fresh keys (what one RequestPayment costs inside Redis).
func (b *bench) redisFloor() error {
	ctx := context.Background()
	trivial, err := b.rdb.ScriptLoad(ctx, "return 1").Result()
	if err != nil {
		return err
	}
	src, err := os.ReadFile(filepath.Join(b.root, "internal/storage/create.lua"))
	if err != nil {
		return err
	}
	create, err := b.rdb.ScriptLoad(ctx, string(src)).Result()
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(b.redis)
	cmds := []struct {
		name string
		args []string
	}{
		{"EVALSHA trivial script (return 1)", []string{"EVALSHA", trivial, "0"}},
		{"EVALSHA create.lua, new keys", []string{"EVALSHA", create, "2", "pmt:v3:{__rand_int__}:idem:m_dev:x", "pmt:v3:{__rand_int__}:pay:y",
			strings.Repeat("f", 64) + ":pay_01JXXXXXXXXXXXXXXXXXXXXXXX_0123abcd:1764000000000000000", "86400000", "0", "0",
			"st", "1", "ts", "1764000000000000000", "amt", "1250", "cur", "EUR", "ord", "bench-order", "ik", "bench-key", "md", "", "mer", "m_dev"}},
	}
	fmt.Println("## Redis floor (redis-benchmark, same Redis)")
	fmt.Println()
	fmt.Println("| command | concurrency | rps | p50 ms | p95 ms | p99 ms |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, bc := range cmds {
		for _, c := range b.conc {
			n := 100_000
			if c == 1 {
				n = 20_000
			}
			args := append([]string{"-h", host, "-p", port, "-c", strconv.Itoa(c), "-n", strconv.Itoa(n),
				"-r", "1000000000", "--csv"}, bc.args...)
			out, err := exec.Command("redis-benchmark", args...).Output()
			if err != nil {
				return fmt.Errorf("redis-benchmark %s: %w", strings.Join(args, " "), err)
			}
			rec, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
			if err != nil || len(rec) < 2 || len(rec[1]) < 7 {
				return fmt.Errorf("redis-benchmark output %q: %w", out, err)
			}
			// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
			r := rec[1]
			fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", bc.name, c, r[1], r[4], r[5], r[6])
		}
	}
	fmt.Println()
	return b.rdb.FlushAll(ctx).Err()
}

// memoryPerPayment stores n payments through the storage package, as the
// server does, and reports the growth of used_memory per payment (the
// payment hash plus its idempotency record).
func (b *bench) memoryPerPayment(n int, listpackValue string) error {
	ctx := context.Background()
	if err := b.rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	before, err := usedMemory(ctx, b.rdb)
	if err != nil {
		return err
	}
	repo := storage.New(b.rdb, storage.Options{IdempotencyTTL: 24 * time.Hour})
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				req := payments.Request{
					MerchantID:  auth.DevMerchant,
					AmountMinor: 1250, Currency: "EUR",
					OrderID:        fmt.Sprintf("order-%08d", i),
					IdempotencyKey: fmt.Sprintf("%08d-6f1c-4d2a-9b3e-0c5d7e8f9a1b", i), // UUID-sized
					Metadata:       map[string]string{"source": "bench"},
				}
				if _, _, err := repo.Create(ctx, payments.New(req, time.Now().UTC()), payments.Fingerprint(req)); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("store payments: %w", firstErr)
	}
	took := time.Since(start)
	after, err := usedMemory(ctx, b.rdb)
	if err != nil {
		return err
	}
	keys, err := b.rdb.DBSize(ctx).Result()
	if err != nil {
		return err
	}
	var sample []string
	it := b.rdb.Scan(ctx, 0, "pmt:*", 2).Iterator()
	for it.Next(ctx) && len(sample) < 2 {
		sample = append(sample, it.Val())
	}
	fmt.Printf("## Redis memory per payment, hash-max-listpack-value %s\n", listpackValue)
	fmt.Println()
	fmt.Printf("%d payments stored through internal/storage (32 goroutines, %.0f payments/s), %d keys.\n\n", n, float64(n)/took.Seconds(), keys)
	fmt.Println("| used_memory before | after | per payment (payment hash + idempotency record) |")
	fmt.Println("|---:|---:|---:|")
	fmt.Printf("| %d B | %d B | %.0f B |\n\n", before, after, float64(after-before)/float64(n))
	for _, k := range sample {
		u, err1 := b.rdb.MemoryUsage(ctx, k, 0).Result()
		enc, err2 := b.rdb.ObjectEncoding(ctx, k).Result()
		if err1 == nil && err2 == nil {
			fmt.Printf("- %s: MEMORY USAGE %d B, encoding %s\n", k, u, enc)
		}
	}
	fmt.Println()
	return b.rdb.FlushAll(ctx).Err()
}

func usedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}

// loadavg is /proc/loadavg's first three fields: the machine is shared, so
// the reader should know how busy it was.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
