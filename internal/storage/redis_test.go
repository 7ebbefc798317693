package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/payments"
)

var testOptions = Options{IdempotencyTTL: 24 * time.Hour}

func newRepo(t *testing.T, opts Options) (*Repository, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	return New(client, opts), mr
}

func request(key string) payments.Request {
	return payments.Request{MerchantID: "m_test",
		AmountMinor:    1234,
		Currency:       "USD",
		OrderID:        "order-1",
		IdempotencyKey: key,
		Metadata:       map[string]string{"channel": "web"},
	}
}

var t0 = time.Date(2026, 11, 22, 9, 30, 0, 123456789, time.UTC)

func TestCreateThenGet(t *testing.T) {
	repo, _ := newRepo(t, testOptions)
	ctx := context.Background()
	req := request("k1")
	p := payments.New(req, t0)

	rc, outcome, err := repo.Create(ctx, p, payments.Fingerprint(req))
	if err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	if outcome != payments.OutcomeCreated {
		t.Errorf("Create() outcome = %q, want %q", outcome, payments.OutcomeCreated)
	}
	if diff := cmp.Diff(p.Receipt(), rc); diff != "" {
		t.Errorf("Create() receipt mismatch (-want +got):\n%s", diff)
	}

	got, err := repo.Get(ctx, "m_test", p.ID)
	if err != nil {
		t.Fatalf("Get(%q) error = %v", p.ID, err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("Get() mismatch (-want +got):\n%s", diff)
	}
}

func TestCreateIdempotency(t *testing.T) {
	tests := []struct {
		name        string
		second      func(payments.Request) payments.Request
		wantOutcome payments.Outcome
		wantErr     error
	}{
		{name: "same payload replays", second: func(r payments.Request) payments.Request { return r }, wantOutcome: payments.OutcomeReplayed},
		{name: "different amount is a mismatch", second: func(r payments.Request) payments.Request { r.AmountMinor++; return r }, wantOutcome: payments.OutcomeMismatch, wantErr: payments.ErrIdempotencyKeyReused},
		{name: "different metadata is a mismatch", second: func(r payments.Request) payments.Request {
			r.Metadata = map[string]string{"channel": "app"}
			return r
		}, wantOutcome: payments.OutcomeMismatch, wantErr: payments.ErrIdempotencyKeyReused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, mr := newRepo(t, testOptions)
			ctx := context.Background()
			req := request("k1")
			first := payments.New(req, t0)
			want, _, err := repo.Create(ctx, first, payments.Fingerprint(req))
			if err != nil {
				t.Fatalf("first Create() error = %v", err)
			}
			keysBefore := mr.Keys()

			req2 := tt.second(req)
			second := payments.New(req2, t0.Add(time.Second))
			got, outcome, err := repo.Create(ctx, second, payments.Fingerprint(req2))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("second Create() error = %v, want %v", err, tt.wantErr)
			}
			if outcome != tt.wantOutcome {
				t.Errorf("second Create() outcome = %q, want %q", outcome, tt.wantOutcome)
			}
			if tt.wantErr == nil {
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("replayed receipt mismatch (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(keysBefore, mr.Keys()); diff != "" {
				t.Errorf("second Create() changed the key set (-before +after):\n%s", diff)
			}
			if _, err := repo.Get(ctx, "m_test", second.ID); !errors.Is(err, payments.ErrNotFound) {
				t.Errorf("Get(second id) error = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestReplayReturnsOriginalReceiptAfterStatusChange(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	ctx := context.Background()
	req := request("k1")
	p := payments.New(req, t0)
	if _, _, err := repo.Create(ctx, p, payments.Fingerprint(req)); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
	// Settle the payment behind the repository's back, as a webhook would.
	mr.HSet(PaymentKey(payments.HashTag("m_test", "k1"), p.ID), "st", "2", "msg", "settled")

	got, outcome, err := repo.Create(ctx, payments.New(req, t0.Add(time.Hour)), payments.Fingerprint(req))
	if err != nil || outcome != payments.OutcomeReplayed {
		t.Fatalf("replay Create() = %v, %v, want replayed, nil", outcome, err)
	}
	if diff := cmp.Diff(p.Receipt(), got); diff != "" {
		t.Errorf("replay after settlement mismatch (-want +got):\n%s", diff)
	}
}

func TestRetention(t *testing.T) {
	tests := []struct {
		name            string
		opts            Options
		advance         time.Duration
		wantReplay      bool
		wantPaymentKept bool
	}{
		{name: "key remembered inside its TTL", opts: Options{IdempotencyTTL: time.Hour}, advance: 59 * time.Minute, wantReplay: true, wantPaymentKept: true},
		{name: "key forgotten after its TTL, payment kept", opts: Options{IdempotencyTTL: time.Hour}, advance: 61 * time.Minute, wantReplay: false, wantPaymentKept: true},
		{name: "payment expires with its own TTL", opts: Options{IdempotencyTTL: time.Hour, PaymentTTL: 2 * time.Hour}, advance: 121 * time.Minute, wantReplay: false, wantPaymentKept: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, mr := newRepo(t, tt.opts)
			ctx := context.Background()
			req := request("k1")
			first := payments.New(req, t0)
			if _, _, err := repo.Create(ctx, first, payments.Fingerprint(req)); err != nil {
				t.Fatalf("Create() error = %v", err)
			}
			mr.FastForward(tt.advance)

			rc, outcome, err := repo.Create(ctx, payments.New(req, t0.Add(tt.advance)), payments.Fingerprint(req))
			if err != nil {
				t.Fatalf("second Create() error = %v", err)
			}
			if got := outcome == payments.OutcomeReplayed; got != tt.wantReplay {
				t.Errorf("second Create() replayed = %v, want %v", got, tt.wantReplay)
			}
			if !tt.wantReplay && rc.PaymentID == first.ID {
				t.Errorf("after TTL the key returned the old payment %s, want a new one", first.ID)
			}
			_, err = repo.Get(ctx, "m_test", first.ID)
			if got := err == nil; got != tt.wantPaymentKept {
				t.Errorf("Get(first) kept = %v (err %v), want %v", got, err, tt.wantPaymentKept)
			}
		})
	}
}

func TestCreateRetriesOnIDCollision(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	req := request("k1")
	p := payments.New(req, t0)
	mr.HSet(PaymentKey(payments.HashTag("m_test", "k1"), p.ID), "id", p.ID)

	rc, outcome, err := repo.Create(context.Background(), p, payments.Fingerprint(req))
	if err != nil || outcome != payments.OutcomeCreated {
		t.Fatalf("Create() = %v, %v, want created, nil", outcome, err)
	}
	if rc.PaymentID == p.ID {
		t.Errorf("Create() reused the colliding id %s, want a fresh one", p.ID)
	}
	if got := mr.HGet(PaymentKey(payments.HashTag("m_test", "k1"), p.ID), "amt"); got != "" {
		t.Errorf("colliding record was overwritten: amt = %q, want untouched", got)
	}
}

func TestConcurrentCreateOneKey(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	const callers = 64
	req := request("shared-key")
	fp := payments.Fingerprint(req)

	var wg sync.WaitGroup
	receipts := make([]payments.Receipt, callers)
	outcomes := make([]payments.Outcome, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			receipts[i], outcomes[i], errs[i] = repo.Create(context.Background(), payments.New(req, time.Now()), fp)
		})
	}
	wg.Wait()

	created := 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Create() error = %v", i, errs[i])
		}
		if outcomes[i] == payments.OutcomeCreated {
			created++
		}
		if diff := cmp.Diff(receipts[0], receipts[i]); diff != "" {
			t.Errorf("caller %d receipt differs from caller 0 (-0 +%d):\n%s", i, i, diff)
		}
	}
	if created != 1 {
		t.Errorf("created outcomes = %d, want exactly 1", created)
	}
	if got := len(mr.Keys()); got != 2 {
		t.Errorf("Redis holds %d keys, want 2 (one payment, one idempotency record): %v", got, mr.Keys())
	}
}

func TestKeysShareHashTag(t *testing.T) {
	p := payments.New(request("k1"), t0)
	tag, err := payments.ParseID(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	idem, pay := IdempotencyKey("m_test", "k1"), PaymentKey(tag, p.ID)
	want := "{" + payments.HashTag("m_test", "k1") + "}"
	for _, k := range []string{idem, pay} {
		if got := k[len(keyPrefix) : len(keyPrefix)+len(want)]; got != want {
			t.Errorf("key %q hash tag = %q, want %q", k, got, want)
		}
	}
}

// TestStoredRecords pins what one payment stores: the idempotency record as
// one string, and a payment hash without its id (in the key) or its message
// (derived). Fewer, shorter fields are what keeps both in Redis's compact
// encodings and each create cheap (BENCHMARKS.md, "CPU per call").
func TestStoredRecords(t *testing.T) {
	repo, mr := newRepo(t, Options{IdempotencyTTL: time.Hour, PaymentTTL: 48 * time.Hour})
	req := request("k1")
	req.Metadata = map[string]string{"cart": "c-9"}
	p := payments.New(req, t0)
	if _, _, err := repo.Create(context.Background(), p, payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	tag, _ := payments.ParseID(p.ID)
	rec, err := mr.Get(IdempotencyKey("m_test", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := payments.Fingerprint(req) + ":" + p.ID + ":1795339800123456789"; rec != want {
		t.Errorf("idempotency record = %q, want %q", rec, want)
	}
	want := map[string]string{
		"st": "1", "ts": "1795339800123456789", "amt": strconv.FormatInt(req.AmountMinor, 10), "cur": req.Currency,
		"ord": req.OrderID, "ik": "k1", "md": `{"cart":"c-9"}`, "mer": "m_test",
	}
	fields, err := mr.HKeys(PaymentKey(tag, p.ID))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fields {
		got[f] = mr.HGet(PaymentKey(tag, p.ID), f)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payment hash mismatch (-want +got):\n%s", diff)
	}
	for key, ttl := range map[string]time.Duration{IdempotencyKey("m_test", "k1"): time.Hour, PaymentKey(tag, p.ID): 48 * time.Hour} {
		if got := mr.TTL(key); got != ttl {
			t.Errorf("TTL of %s = %s, want %s", key, got, ttl)
		}
	}
}

// TestMerchantScope shows the v3 layout: one idempotency key of two
// merchants is two records and two payments, a payment is invisible to
// another merchant, and nothing is stored without a merchant.
func TestMerchantScope(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	ctx := context.Background()
	reqA, reqB := request("shared"), request("shared")
	reqA.MerchantID, reqB.MerchantID = "m_a", "m_b"
	pa, pb := payments.New(reqA, t0), payments.New(reqB, t0)
	for _, c := range []struct {
		p   payments.Payment
		req payments.Request
	}{{pa, reqA}, {pb, reqB}} {
		if _, outcome, err := repo.Create(ctx, c.p, payments.Fingerprint(c.req)); err != nil || outcome != payments.OutcomeCreated {
			t.Fatalf("Create(%s) = %q, %v; want created", c.p.MerchantID, outcome, err)
		}
	}
	for _, k := range []string{IdempotencyKey("m_a", "shared"), IdempotencyKey("m_b", "shared")} {
		if !strings.HasPrefix(k, "pmt:v3:{") || !mr.Exists(k) {
			t.Errorf("idempotency record %q missing or outside the v3 layout", k)
		}
	}
	got, err := repo.Get(ctx, "m_a", pa.ID)
	if err != nil || got.MerchantID != "m_a" {
		t.Errorf("Get(m_a, own) = %+v, %v; want its payment with merchant m_a", got, err)
	}
	noneID := payments.NewID("m_b", "none", t0)
	_, errOther := repo.Get(ctx, "m_b", pa.ID)
	_, errNone := repo.Get(ctx, "m_b", noneID)
	if !errors.Is(errOther, payments.ErrNotFound) || strings.ReplaceAll(errOther.Error(), pa.ID, "ID") != strings.ReplaceAll(errNone.Error(), noneID, "ID") {
		t.Errorf("Get(m_b, m_a's) = %v, want ErrNotFound worded as for an unknown id (%v)", errOther, errNone)
	}

	keys := len(mr.Keys())
	noMerchant := request("k-none")
	noMerchant.MerchantID = ""
	if _, _, err := repo.Create(ctx, payments.New(noMerchant, t0), payments.Fingerprint(noMerchant)); !errors.Is(err, ErrNoMerchant) {
		t.Errorf("Create() without a merchant = %v, want ErrNoMerchant", err)
	}
	if _, err := repo.Get(ctx, "", pa.ID); !errors.Is(err, ErrNoMerchant) {
		t.Errorf("Get() without a merchant = %v, want ErrNoMerchant", err)
	}
	if _, _, err := repo.Replay(ctx, noMerchant, ""); !errors.Is(err, ErrNoMerchant) {
		t.Errorf("Replay() without a merchant = %v, want ErrNoMerchant", err)
	}
	if got := len(mr.Keys()); got != keys {
		t.Errorf("calls without a merchant wrote %d keys", got-keys)
	}
}

func TestReplayReadsOnly(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	ctx := context.Background()
	req := request("k1")
	p := payments.New(req, t0)
	if _, _, err := repo.Create(ctx, p, payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	other := request("k1")
	other.AmountMinor++
	tests := []struct {
		name        string
		merchant    string
		key         string
		fingerprint string
		want        payments.Outcome
		wantErr     error
	}{
		{"same request", "m_test", "k1", payments.Fingerprint(req), payments.OutcomeReplayed, nil},
		{"different request", "m_test", "k1", payments.Fingerprint(other), payments.OutcomeMismatch, payments.ErrIdempotencyKeyReused},
		{"unknown key", "m_test", "k2", payments.Fingerprint(req), "", payments.ErrNotFound},
		{"other merchant", "m_other", "k1", payments.Fingerprint(req), "", payments.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := mr.Keys()
			r := request(tt.key)
			r.MerchantID = tt.merchant
			rc, outcome, err := repo.Replay(ctx, r, tt.fingerprint)
			if outcome != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Replay() = %q, %v; want %q, %v", outcome, err, tt.want, tt.wantErr)
			}
			if tt.want == payments.OutcomeReplayed {
				if diff := cmp.Diff(p.Receipt(), rc); diff != "" {
					t.Errorf("Replay() receipt mismatch (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(before, mr.Keys()); diff != "" {
				t.Errorf("Replay() changed the keys (-before +after):\n%s", diff)
			}
		})
	}
	for name, rec := range map[string]string{
		"no separators":     payments.Fingerprint(req) + p.ID,
		"short fingerprint": "abc:" + p.ID + ":1",
		"created_at":        payments.Fingerprint(req) + ":" + p.ID + ":x",
	} {
		if err := mr.Set(IdempotencyKey("m_test", "k3"), rec); err != nil {
			t.Fatal(err)
		}
		if _, _, err := repo.Replay(ctx, request("k3"), payments.Fingerprint(req)); err == nil || errors.Is(err, payments.ErrNotFound) {
			t.Errorf("Replay() of a corrupt record (%s) = %v, want a decoding error", name, err)
		}
	}
	mr.Close()
	if _, _, err := repo.Replay(ctx, req, payments.Fingerprint(req)); !errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("Replay() with Redis down = %v, want ErrUnavailable", err)
	}
}

func TestGetErrors(t *testing.T) {
	repo, _ := newRepo(t, testOptions)
	unknown := payments.NewID("m_test", "nobody", t0)
	tests := []struct {
		id      string
		wantErr error
	}{
		{id: "", wantErr: payments.ErrMalformedID},
		{id: "pay_123", wantErr: payments.ErrMalformedID},
		{id: unknown, wantErr: payments.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.id), func(t *testing.T) {
			if _, err := repo.Get(context.Background(), "m_test", tt.id); !errors.Is(err, tt.wantErr) {
				t.Errorf("Get(%q) error = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
}

func TestCorruptRecordIsAnError(t *testing.T) {
	repo, mr := newRepo(t, testOptions)
	id := payments.NewID("m_test", "k1", t0)
	tag, _ := payments.ParseID(id)
	tests := map[string][]string{
		"status":     {"id", id, "mer", "m_test", "st", "x", "ts", "1", "amt", "1"},
		"created_at": {"id", id, "mer", "m_test", "st", "1", "ts", "x", "amt", "1"},
		"amount":     {"id", id, "mer", "m_test", "st", "1", "ts", "1", "amt", "x"},
		"metadata":   {"id", id, "mer", "m_test", "st", "1", "ts", "1", "amt", "1", "md", "{"},
	}
	for name, fields := range tests {
		t.Run(name, func(t *testing.T) {
			mr.Del(PaymentKey(tag, id))
			mr.HSet(PaymentKey(tag, id), fields...)
			_, err := repo.Get(context.Background(), "m_test", id)
			if err == nil || errors.Is(err, payments.ErrUnavailable) || errors.Is(err, payments.ErrNotFound) {
				t.Errorf("Get() error = %v, want a decoding error", err)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	// A listener that is closed at once: dials are refused quickly.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	repo := New(client, testOptions)
	ctx := context.Background()
	req := request("k1")

	checks := map[string]func() error{
		"create": func() error {
			_, _, err := repo.Create(ctx, payments.New(req, t0), payments.Fingerprint(req))
			return err
		},
		"get":  func() error { _, err := repo.Get(ctx, "m_test", payments.NewID("m_test", "k1", t0)); return err },
		"ping": func() error { return repo.Ping(ctx) },
		"apply event": func() error {
			_, err := repo.ApplyEvent(ctx, "evt", "h", payments.Settlement{PaymentID: payments.NewID("m_test", "k1", t0), Status: payments.StatusSucceeded})
			return err
		},
		"load scripts": func() error { return repo.LoadScripts(ctx) },
	}
	for name, call := range checks {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, payments.ErrUnavailable) {
				t.Errorf("error = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name            string
		err             error
		wantUnavailable bool
		wantIs          error
	}{
		{name: "canceled", err: context.Canceled, wantIs: context.Canceled},
		{name: "deadline", err: context.DeadlineExceeded, wantIs: context.DeadlineExceeded},
		{name: "loading", err: redisReply("LOADING Redis is loading the dataset in memory"), wantUnavailable: true},
		{name: "oom", err: redisReply("OOM command not allowed when used memory > 'maxmemory'."), wantUnavailable: true},
		{name: "clusterdown", err: redisReply("CLUSTERDOWN The cluster is down"), wantUnavailable: true},
		{name: "script bug", err: redisReply("ERR user_script:1: Script attempted to access nonexistent global variable"), wantUnavailable: false},
		{name: "pool timeout", err: redis.ErrPoolTimeout, wantUnavailable: true},
		{name: "closed client", err: redis.ErrClosed, wantUnavailable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify("op", tt.err)
			if errors.Is(got, payments.ErrUnavailable) != tt.wantUnavailable {
				t.Errorf("classify(%v) = %v, unavailable = %v, want %v", tt.err, got, !tt.wantUnavailable, tt.wantUnavailable)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v, want it to wrap the cause", tt.err, got)
			}
		})
	}
}

type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

func TestLoadScriptsThenRunBySHA(t *testing.T) {
	repo, _ := newRepo(t, testOptions)
	ctx := context.Background()
	if err := repo.LoadScripts(ctx); err != nil {
		t.Fatalf("LoadScripts() error = %v", err)
	}
	if err := repo.Ping(ctx); err != nil {
		t.Fatalf("Ping() error = %v", err)
	}
	// After a Redis restart or failover the script cache is empty: Create must
	// still work through the EVAL fallback.
	if err := repo.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH error = %v", err)
	}
	req := request("k1")
	if _, outcome, err := repo.Create(ctx, payments.New(req, t0), payments.Fingerprint(req)); err != nil || outcome != payments.OutcomeCreated {
		t.Errorf("Create() after restart = %v, %v, want created, nil", outcome, err)
	}
}
