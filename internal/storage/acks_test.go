package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// replicas is a go-redis hook standing in for the replicas miniredis does not
// have: it answers WAIT and WAITAOF with the counts it is set to (miniredis
// itself answers WAIT with 0 and does not know WAITAOF), and records every
// command the repository sends.
type replicas struct {
	answer bool         // rewrite WAIT and WAITAOF replies; false keeps miniredis's own
	acks   atomic.Int64 // replicas that acknowledge
	local  atomic.Int64 // WAITAOF's local fsyncs

	mu        sync.Mutex
	pipelines [][]string // command names, one slice per pipeline
	singles   []string   // names of commands sent alone
	args      [][]any    // arguments of every command, in order
}

func newReplicas(acks, local int64) *replicas {
	r := &replicas{answer: true}
	r.acks.Store(acks)
	r.local.Store(local)
	return r
}

func (r *replicas) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *replicas) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// Outside a pipeline the error is set on the command after the hooks
		// return, so it is this error that counts.
		err := next(ctx, cmd)
		if !repositoryCommands[cmd.Name()] {
			return err
		}
		r.mu.Lock()
		r.singles = append(r.singles, cmd.Name())
		r.args = append(r.args, cmd.Args())
		r.mu.Unlock()
		if r.rewrite(cmd) {
			return nil
		}
		return err
	}
}

func (r *replicas) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if !slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return repositoryCommands[c.Name()] }) {
			return err
		}
		var names []string
		r.mu.Lock()
		for _, c := range cmds {
			names = append(names, c.Name())
			r.args = append(r.args, c.Args())
			r.rewrite(c)
		}
		r.pipelines = append(r.pipelines, names)
		r.mu.Unlock()
		for _, c := range cmds {
			if c.Err() != nil {
				return c.Err()
			}
		}
		if err != nil && !isReply(err) {
			return err
		}
		return nil
	}
}

// repositoryCommands are the commands the tests follow; the connection
// handshake (HELLO) passes through hooks too.
var repositoryCommands = map[string]bool{"evalsha": true, "eval": true, "wait": true, "waitaof": true}

func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}

// rewrite answers WAIT and WAITAOF for the replicas and reports whether it did.
func (r *replicas) rewrite(cmd redis.Cmder) bool {
	if !r.answer {
		return false
	}
	switch c := cmd.(type) {
	case *redis.IntCmd:
		if c.Name() == "wait" {
			c.SetErr(nil)
			c.SetVal(r.acks.Load())
			return true
		}
	case *redis.IntSliceCmd:
		if c.Name() == "waitaof" {
			c.SetErr(nil)
			c.SetVal([]int64{r.local.Load(), r.acks.Load()})
			return true
		}
	case *redis.Cmd:
		if c.Name() == "waitaof" {
			c.SetErr(nil)
			c.SetVal([]any{r.local.Load(), r.acks.Load()})
			return true
		}
	}
	return false
}

func (r *replicas) sent() (pipelines [][]string, singles []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pipelines), slices.Clone(r.singles)
}

// lastArgs returns the arguments of the last command named name.
func (r *replicas) lastArgs(t *testing.T, name string) []any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.args) - 1; i >= 0; i-- {
		if fmt.Sprint(r.args[i][0]) == name {
			return r.args[i]
		}
	}
	t.Fatalf("no %s command was sent", name)
	return nil
}

// shortfalls counts what the repository observes.
type shortfalls struct{ n atomic.Int64 }

func (s *shortfalls) ObserveReplicaAckShortfall() { s.n.Add(1) }

// ackOptions requires acks replicas within a short timeout: miniredis
// answers WAIT at once, so the timeout is never waited for.
func ackOptions(acks int, obs Observer) Options {
	return Options{IdempotencyTTL: time.Hour, MinReplicaAcks: acks, AckTimeout: 250 * time.Millisecond, AckCommand: AckWait, Observer: obs}
}

// newAckRepo returns a repository with opts on miniredis, behind the hook.
func newAckRepo(t *testing.T, opts Options, hook *replicas) (*Repository, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { client.Close() })
	client.AddHook(hook)
	repo := New(client, opts)
	// As the app does at start-up, so the pipelines run by EVALSHA.
	if err := repo.LoadScripts(context.Background()); err != nil {
		t.Fatalf("LoadScripts() error = %v", err)
	}
	return repo, mr
}

func TestReplicaAcksOffSendsTheScriptAlone(t *testing.T) {
	hook := &replicas{}
	repo, _ := newAckRepo(t, testOptions, hook)
	ctx := context.Background()
	req := request("k1")
	p := payments.New(req, t0)
	for range 2 { // create, then replay
		if _, _, err := repo.Create(ctx, p, payments.Fingerprint(req)); err != nil {
			t.Fatalf("Create() error = %v", err)
		}
	}
	if _, err := repo.ApplyEvent(ctx, "e1", "h1", settlement(p, payments.StatusSucceeded)); err != nil {
		t.Fatalf("ApplyEvent() error = %v", err)
	}
	pipelines, singles := hook.sent()
	if len(pipelines) != 0 {
		t.Errorf("pipelines sent = %v, want none", pipelines)
	}
	if diff := cmp.Diff([]string{"evalsha", "evalsha", "evalsha"}, singles); diff != "" {
		t.Errorf("commands sent (-want +got):\n%s", diff)
	}
	if got := hook.lastArgs(t, "evalsha"); got[len(got)-1] != "0" {
		t.Errorf("last script argument = %v, want the acks flag \"0\"", got[len(got)-1])
	}
}

func TestReplicaAcksOnePipeline(t *testing.T) {
	hook := newReplicas(1, 0)
	obs := &shortfalls{}
	repo, mr := newAckRepo(t, ackOptions(1, obs), hook)
	// A fixed clock on a millisecond: the touch goes through an absolute
	// time in milliseconds, and a loaded machine must not move "now" between
	// the two halves of the check.
	mr.SetTime(t0.Truncate(time.Millisecond))
	ctx := context.Background()
	req := request("k1")
	p := payments.New(req, t0)
	idem := IdempotencyKey("m_test", "k1")

	rc, outcome, err := repo.Create(ctx, p, payments.Fingerprint(req))
	if err != nil || outcome != payments.OutcomeCreated {
		t.Fatalf("Create() = %v, %v, want created, nil", outcome, err)
	}
	ttl := mr.TTL(idem)
	mr.FastForward(time.Minute)
	again, outcome, err := repo.Create(ctx, payments.New(req, t0.Add(time.Minute)), payments.Fingerprint(req))
	if err != nil || outcome != payments.OutcomeReplayed {
		t.Fatalf("replay Create() = %v, %v, want replayed, nil", outcome, err)
	}
	if diff := cmp.Diff(rc, again); diff != "" {
		t.Errorf("replayed receipt (-created +replayed):\n%s", diff)
	}
	// The replay's write re-sets the expiry it already had: the record still
	// expires when it would have.
	if got, want := mr.TTL(idem), ttl-time.Minute; got != want {
		t.Errorf("idempotency record TTL after the replay = %v, want %v", got, want)
	}
	for _, step := range []struct {
		event string
		want  payments.SettleOutcome
	}{{"e1", payments.SettleApplied}, {"e1", payments.SettleDuplicate}, {"e2", payments.SettleAlreadySettled}} {
		if got, err := repo.ApplyEvent(ctx, step.event, "h-"+step.event, settlement(p, payments.StatusSucceeded)); err != nil || got != step.want {
			t.Fatalf("ApplyEvent(%s) = %q, %v, want %q", step.event, got, err, step.want)
		}
	}

	pipelines, singles := hook.sent()
	want := slices.Repeat([][]string{{"evalsha", "wait"}}, 5)
	if diff := cmp.Diff(want, pipelines); diff != "" {
		t.Errorf("pipelines sent (-want +got):\n%s", diff)
	}
	if len(singles) != 0 {
		t.Errorf("commands sent outside a pipeline = %v, want none", singles)
	}
	if diff := cmp.Diff([]any{"wait", 1, int64(250)}, hook.lastArgs(t, "wait")); diff != "" {
		t.Errorf("WAIT arguments (-want +got):\n%s", diff)
	}
	if got := hook.lastArgs(t, "evalsha"); got[len(got)-1] != "1" {
		t.Errorf("last script argument = %v, want the acks flag \"1\"", got[len(got)-1])
	}
	if got := obs.n.Load(); got != 0 {
		t.Errorf("shortfalls observed = %d, want 0", got)
	}
}

func TestReplicaAckShortfallCreate(t *testing.T) {
	hook := newReplicas(1, 0)
	obs := &shortfalls{}
	repo, mr := newAckRepo(t, ackOptions(2, obs), hook)
	ctx := context.Background()
	req := request("k1")
	first := payments.New(req, t0)
	fp := payments.Fingerprint(req)

	_, _, err := repo.Create(ctx, first, fp)
	if !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("Create() with 1 of 2 acks: error = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "1 replicas acknowledged") {
		t.Errorf("error = %q, want it to say how many replicas acknowledged", err)
	}
	// The primary holds the payment: the retry must find it, not create another.
	rec, _ := mr.Get(IdempotencyKey("m_test", "k1"))
	if got := strings.Split(rec, ":"); len(got) != 3 || got[1] != first.ID {
		t.Fatalf("primary holds idempotency record %q for the key, want payment %q in it", rec, first.ID)
	}
	keys := mr.Keys()

	second := payments.New(req, t0.Add(time.Second))
	if _, _, err := repo.Create(ctx, second, fp); !errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("replay with 1 of 2 acks: error = %v, want ErrUnavailable", err)
	}
	other := request("k1")
	other.AmountMinor++
	if _, outcome, err := repo.Create(ctx, payments.New(other, t0), payments.Fingerprint(other)); !errors.Is(err, payments.ErrIdempotencyKeyReused) || outcome != payments.OutcomeMismatch {
		t.Errorf("mismatch with 1 of 2 acks = %v, %v, want a mismatch: a refusal acknowledges nothing", outcome, err)
	}
	if got := obs.n.Load(); got != 2 {
		t.Errorf("shortfalls observed = %d, want 2 (the create and the replay)", got)
	}

	hook.acks.Store(2)
	rc, outcome, err := repo.Create(ctx, payments.New(req, t0.Add(2*time.Second)), fp)
	if err != nil || outcome != payments.OutcomeReplayed {
		t.Fatalf("retry with 2 acks = %v, %v, want replayed, nil", outcome, err)
	}
	if diff := cmp.Diff(first.Receipt(), rc); diff != "" {
		t.Errorf("retry receipt (-first attempt +retry):\n%s", diff)
	}
	if diff := cmp.Diff(keys, mr.Keys()); diff != "" {
		t.Errorf("the retries changed the key set (-after the first attempt +now):\n%s", diff)
	}
	if got := obs.n.Load(); got != 2 {
		t.Errorf("shortfalls observed = %d, want still 2", got)
	}
}

func TestReplicaAckShortfallApplyEvent(t *testing.T) {
	tests := []struct {
		name    string
		before  []string // event ids applied (as successes) before, with acks met
		event   string
		status  payments.Status
		wantErr error
	}{
		{name: "applied", event: "e1", status: payments.StatusSucceeded, wantErr: payments.ErrUnavailable},
		{name: "duplicate", before: []string{"e1"}, event: "e1", status: payments.StatusSucceeded, wantErr: payments.ErrUnavailable},
		{name: "already settled", before: []string{"e1"}, event: "e2", status: payments.StatusSucceeded, wantErr: payments.ErrUnavailable},
		{name: "settlement conflict acknowledges nothing", before: []string{"e1"}, event: "e2", status: payments.StatusFailed, wantErr: payments.ErrSettlementConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook := newReplicas(1, 0)
			obs := &shortfalls{}
			repo, _ := newAckRepo(t, ackOptions(1, obs), hook)
			p := created(t, repo)
			ctx := context.Background()
			for _, id := range tt.before {
				if _, err := repo.ApplyEvent(ctx, id, "h-"+id, settlement(p, payments.StatusSucceeded)); err != nil {
					t.Fatalf("ApplyEvent(%s) error = %v", id, err)
				}
			}

			hook.acks.Store(0)
			_, err := repo.ApplyEvent(ctx, tt.event, "h-"+tt.event, settlement(p, tt.status))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ApplyEvent(%s) with 0 of 1 acks: error = %v, want %v", tt.event, err, tt.wantErr)
			}
			wantObserved := int64(0)
			if errors.Is(tt.wantErr, payments.ErrUnavailable) {
				wantObserved = 1
			}
			if got := obs.n.Load(); got != wantObserved {
				t.Errorf("shortfalls observed = %d, want %d", got, wantObserved)
			}
			if wantObserved == 0 {
				return
			}
			// The provider redelivers; once the replica acknowledges, the
			// event is a duplicate of what the primary already holds.
			hook.acks.Store(1)
			if got, err := repo.ApplyEvent(ctx, tt.event, "h-"+tt.event, settlement(p, tt.status)); err != nil || got != payments.SettleDuplicate {
				t.Errorf("redelivery with the ack = %q, %v, want duplicate", got, err)
			}
		})
	}
}

func TestReplicaAckShortfallOnMiniredisAlone(t *testing.T) {
	// Without the hook, miniredis answers WAIT with 0: no replica ever
	// acknowledges, and every create says so.
	repo, _ := newAckRepo(t, ackOptions(1, nil), &replicas{})
	req := request("k1")
	if _, _, err := repo.Create(context.Background(), payments.New(req, t0), payments.Fingerprint(req)); !errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("Create() with no replicas: error = %v, want ErrUnavailable", err)
	}
}

func TestReplicaAcksAfterScriptFlush(t *testing.T) {
	hook := newReplicas(1, 0)
	repo, _ := newAckRepo(t, ackOptions(1, nil), hook)
	ctx := context.Background()
	if err := repo.LoadScripts(ctx); err != nil {
		t.Fatalf("LoadScripts() error = %v", err)
	}
	// A restart or failover empties the script cache; a pipeline has no EVAL
	// fallback of its own.
	if err := repo.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH error = %v", err)
	}
	req := request("k1")
	p := payments.New(req, t0)
	if _, outcome, err := repo.Create(ctx, p, payments.Fingerprint(req)); err != nil || outcome != payments.OutcomeCreated {
		t.Fatalf("Create() after SCRIPT FLUSH = %v, %v, want created, nil", outcome, err)
	}
	if err := repo.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH error = %v", err)
	}
	if got, err := repo.ApplyEvent(ctx, "e1", "h1", settlement(p, payments.StatusSucceeded)); err != nil || got != payments.SettleApplied {
		t.Fatalf("ApplyEvent() after SCRIPT FLUSH = %q, %v, want applied", got, err)
	}
	pipelines, _ := hook.sent()
	want := [][]string{{"evalsha", "wait"}, {"eval", "wait"}, {"evalsha", "wait"}, {"eval", "wait"}}
	if diff := cmp.Diff(want, pipelines); diff != "" {
		t.Errorf("pipelines sent (-want +got):\n%s", diff)
	}
}

func TestReplicaAcksWaitAOF(t *testing.T) {
	tests := []struct {
		name          string
		local, acks   int64
		nativeReply   bool // keep miniredis's own answer: it does not know WAITAOF
		wantErr       error
		notRetryable  bool
		wantShortfall bool
	}{
		{name: "primary and replica fsynced", local: 1, acks: 1},
		{name: "primary did not fsync", local: 0, acks: 1, wantErr: payments.ErrUnavailable, wantShortfall: true},
		{name: "replica did not fsync", local: 1, acks: 0, wantErr: payments.ErrUnavailable, wantShortfall: true},
		{name: "redis without WAITAOF", nativeReply: true, wantErr: ErrAckUnsupported, notRetryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook := newReplicas(tt.acks, tt.local)
			hook.answer = !tt.nativeReply
			obs := &shortfalls{}
			opts := ackOptions(1, obs)
			opts.AckCommand = AckWaitAOF
			repo, _ := newAckRepo(t, opts, hook)
			req := request("k1")
			_, _, err := repo.Create(context.Background(), payments.New(req, t0), payments.Fingerprint(req))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Create() error = %v, want %v", err, tt.wantErr)
			}
			if tt.notRetryable && errors.Is(err, payments.ErrUnavailable) {
				t.Errorf("Create() error = %v is retryable, want a configuration error", err)
			}
			if got := obs.n.Load() == 1; got != tt.wantShortfall {
				t.Errorf("shortfall observed = %v, want %v", got, tt.wantShortfall)
			}
			pipelines, _ := hook.sent()
			if diff := cmp.Diff([][]string{{"evalsha", "waitaof"}}, pipelines); diff != "" {
				t.Errorf("pipelines sent (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]any{"waitaof", 1, 1, int64(250)}, hook.lastArgs(t, "waitaof")); diff != "" {
				t.Errorf("WAITAOF arguments (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckAcks(t *testing.T) {
	tests := []struct {
		name    string
		acks    int
		command AckCommand
		answer  bool
		wantErr error
		wantCmd bool
	}{
		{name: "acks off", acks: 0, command: AckWaitAOF},
		{name: "wait needs no check", acks: 1, command: AckWait},
		{name: "waitaof answered", acks: 1, command: AckWaitAOF, answer: true, wantCmd: true},
		{name: "waitaof unknown", acks: 1, command: AckWaitAOF, wantErr: ErrAckUnsupported, wantCmd: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook := newReplicas(0, 1)
			hook.answer = tt.answer
			opts := ackOptions(tt.acks, nil)
			opts.AckCommand = tt.command
			repo, _ := newAckRepo(t, opts, hook)
			err := repo.CheckAcks(context.Background())
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckAcks() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "7.2") {
				t.Errorf("CheckAcks() = %q, want it to name the Redis version needed", err)
			}
			_, singles := hook.sent()
			if got := slices.Contains(singles, "waitaof"); got != tt.wantCmd {
				t.Errorf("WAITAOF sent = %v, want %v (commands %v)", got, tt.wantCmd, singles)
			}
		})
	}
}

func TestCheckAcksRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	opts := ackOptions(1, nil)
	opts.AckCommand = AckWaitAOF
	err = New(client, opts).CheckAcks(context.Background())
	if !errors.Is(err, payments.ErrUnavailable) || errors.Is(err, ErrAckUnsupported) {
		t.Errorf("CheckAcks() with Redis down = %v, want ErrUnavailable only", err)
	}
}

// cluster is a Cluster client over miniredis nodes whose slot map the test
// controls, with a hook on every node's own client.
type cluster struct {
	client  *redis.ClusterClient
	nodes   map[string]*miniredis.Miniredis // by port: go-redis may name a loopback node ":port"
	hooks   map[string]*replicas            // by port
	routed  *replicas                       // on the Cluster client itself
	loads   atomic.Int64                    // slot map loads
	owners  atomic.Pointer[[]string]        // addresses owning slots 0-8191 and 8192-16383
	hooksMu sync.Mutex
}

func newCluster(t *testing.T, n int) (*Repository, *cluster) {
	t.Helper()
	c := &cluster{nodes: map[string]*miniredis.Miniredis{}, hooks: map[string]*replicas{}, routed: &replicas{}}
	var addrs []string
	for range n {
		mr := miniredis.RunT(t)
		c.nodes[mr.Port()] = mr
		c.hooks[mr.Port()] = newReplicas(1, 0)
		addrs = append(addrs, mr.Addr())
	}
	owners := []string{addrs[0], addrs[len(addrs)-1]}
	c.owners.Store(&owners)
	c.client = redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:           addrs,
		MaxRetries:      -1,
		DisableIdentity: true,
		ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
			c.loads.Add(1)
			o := *c.owners.Load()
			return []redis.ClusterSlot{
				{Start: 0, End: 8191, Nodes: []redis.ClusterNode{{Addr: o[0]}}},
				{Start: 8192, End: 16383, Nodes: []redis.ClusterNode{{Addr: o[1]}}},
			}, nil
		},
	})
	t.Cleanup(func() { c.client.Close() })
	c.client.AddHook(c.routed)
	c.client.OnNewNode(func(node *redis.Client) {
		c.hooksMu.Lock()
		defer c.hooksMu.Unlock()
		node.AddHook(c.hooks[port(node.Options().Addr)])
	})
	repo := New(c.client, ackOptions(1, nil))
	if err := repo.LoadScripts(context.Background()); err != nil {
		t.Fatalf("LoadScripts() error = %v", err)
	}
	return repo, c
}

func TestReplicaAcksClusterRoutesToTheKeysPrimary(t *testing.T) {
	repo, c := newCluster(t, 2)
	ctx := context.Background()
	const keys = 20
	for i := range keys {
		req := request(fmt.Sprintf("k%d", i))
		if _, outcome, err := repo.Create(ctx, payments.New(req, t0), payments.Fingerprint(req)); err != nil || outcome != payments.OutcomeCreated {
			t.Fatalf("Create(k%d) = %v, %v, want created, nil", i, outcome, err)
		}
	}
	total := 0
	for node, hook := range c.hooks {
		pipelines, _ := hook.sent()
		if len(pipelines) == 0 {
			t.Errorf("node :%s got no pipeline, want some of the %d keys", node, keys)
		}
		for _, p := range pipelines {
			if diff := cmp.Diff([]string{"evalsha", "wait"}, p); diff != "" {
				t.Errorf("node :%s pipeline (-want +got):\n%s", node, diff)
			}
		}
		total += len(pipelines)
		// Every key whose script ran here is stored here: the WAIT went to
		// the primary that took the write.
		hook.mu.Lock()
		for _, args := range hook.args {
			if args[0] != "evalsha" {
				continue
			}
			if key := args[3].(string); !c.nodes[node].Exists(key) {
				t.Errorf("node :%s ran the script for %s but does not hold it", node, key)
			}
		}
		hook.mu.Unlock()
	}
	if total != keys {
		t.Errorf("pipelines on the nodes = %d, want %d (one per create)", total, keys)
	}
	pipelines, singles := c.routed.sent()
	if len(pipelines) != 0 || slices.Contains(singles, "wait") {
		t.Errorf("the Cluster client routed %v and %v itself, want nothing: a keyless WAIT would go to a random node", pipelines, singles)
	}
}

func TestReplicaAcksClusterMovedIsRetryable(t *testing.T) {
	repo, c := newCluster(t, 2)
	ctx := context.Background()
	owners := *c.owners.Load()
	oldOwner, newOwner := owners[0], owners[1]
	// A key the slot map places on the old owner.
	var key string
	for i := 0; key == ""; i++ {
		node, err := c.client.MasterForKey(ctx, IdempotencyKey("m_test", fmt.Sprintf("k%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if port(node.Options().Addr) == port(oldOwner) {
			key = fmt.Sprintf("k%d", i)
			// Its slots move: the old owner answers MOVED from now on, and
			// the next slot map load places every slot on the new owner.
			node.AddHook(&movedHook{to: newOwner})
		}
	}
	c.owners.Store(&[]string{newOwner, newOwner})
	loads := c.loads.Load()

	req := request(key)
	p := payments.New(req, t0)
	_, _, err := repo.Create(ctx, p, payments.Fingerprint(req))
	if !errors.Is(err, payments.ErrUnavailable) || !strings.Contains(err.Error(), "MOVED") {
		t.Fatalf("Create() answered MOVED: error = %v, want a retryable ErrUnavailable", err)
	}
	if err := poll(func() bool { return c.loads.Load() > loads }); err != nil {
		t.Fatalf("slot map not reloaded after MOVED: %v", err)
	}
	if err := poll(func() bool {
		node, err := c.client.MasterForKey(ctx, IdempotencyKey("m_test", key))
		return err == nil && port(node.Options().Addr) == port(newOwner)
	}); err != nil {
		t.Fatalf("slot map still places %s on the old owner: %v", key, err)
	}
	if _, outcome, err := repo.Create(ctx, p, payments.Fingerprint(req)); err != nil || outcome != payments.OutcomeCreated {
		t.Fatalf("retry after the reload = %v, %v, want created on the new owner", outcome, err)
	}
	if !c.nodes[port(newOwner)].Exists(IdempotencyKey("m_test", key)) || c.nodes[port(oldOwner)].Exists(IdempotencyKey("m_test", key)) {
		t.Errorf("the payment is not on the new owner alone")
	}
}

// movedHook makes a node answer every pipeline with MOVED, as a primary does
// once its slots have gone to another.
type movedHook struct{ to string }

func (h *movedHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *movedHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *movedHook) ProcessPipelineHook(redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(_ context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			c.SetErr(redisReply("MOVED 1234 " + h.to))
		}
		return cmds[0].Err()
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// poll waits for cond with a deadline: the slot map reloads in the background.
func poll(cond func() bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
