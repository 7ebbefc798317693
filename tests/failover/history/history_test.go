package history

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds: histories read as timelines.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// created is the created_at every payment in these histories got.
var created = t0.Add(123456789 * time.Nanosecond)

const accepted = "payment of USD 12.34 accepted; awaiting provider confirmation"

func reqFor(key string) Request {
	return Request{AmountMinor: 1234, Currency: "USD", OrderID: "order-" + key}
}

// ack is a call on key that was acknowledged with payment id.
func ack(client int, key, id string, start, end int) Op {
	return Op{
		Client: client, Key: key, Req: reqFor(key), Start: at(start), End: at(end), Code: codes.OK,
		PaymentID: id, Status: 1, Message: accepted, CreatedAt: created,
	}
}

// fail is a call on key that failed with code.
func fail(client int, key string, code codes.Code, start, end int) Op {
	return Op{Client: client, Key: key, Req: reqFor(key), Start: at(start), End: at(end), Code: code}
}

// payment is the payment a call on key would have stored as id.
func payment(key, id string) Stored {
	r := reqFor(key)
	return Stored{
		PaymentID: id, Key: key, AmountMinor: r.AmountMinor, Currency: r.Currency, OrderID: r.OrderID,
		Status: 1, CreatedAt: created,
	}
}

// state is a store holding ps, each with an idempotency record pointing at
// it; later payments of a key win its record.
func state(ps ...Stored) Final {
	f := Final{Payments: map[string]Stored{}, Keys: map[string]string{}}
	for _, p := range ps {
		f.Payments[p.PaymentID] = p
		f.Keys[p.Key] = p.PaymentID
	}
	return f
}

// with returns v changed by change, so a case states only what differs.
func with[T any](v T, change func(*T)) T {
	change(&v)
	return v
}

func withRecord(f Final, key, id string) Final {
	f.Keys[key] = id
	return f
}

func withoutRecord(f Final, key string) Final {
	delete(f.Keys, key)
	return f
}

// Only kinds and keys of anomalies are compared: details are for people and
// are checked separately.
var reportOpts = []cmp.Option{
	cmpopts.IgnoreFields(Report{}, "Unavailable", "FirstAck", "LastAck"),
	cmpopts.IgnoreFields(Anomaly{}, "Detail"),
	cmpopts.EquateEmpty(),
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		ops   []Op
		final Final
		want  Report
	}{
		{
			name: "clean history with retries and replays",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				fail(1, "k2", codes.Unavailable, 0, 20),
				ack(1, "k2", "B", 30, 40),
				ack(2, "k1", "A", 35, 45), // replay on another worker
				fail(2, "k3", codes.DeadlineExceeded, 50, 60),
				ack(2, "k3", "C", 70, 80), // the timed-out call had created C
			},
			final: state(payment("k1", "A"), payment("k2", "B"), payment("k3", "C")),
			want: Report{
				Calls: 6, Acked: 4,
				Failed: map[codes.Code]int{codes.Unavailable: 1, codes.DeadlineExceeded: 1},
			},
		},
		{
			name: "failed calls only",
			ops: []Op{
				fail(0, "k1", codes.Unavailable, 0, 10),
				fail(0, "k1", codes.Unavailable, 20, 30),
				fail(1, "k2", codes.DeadlineExceeded, 0, 500),
				fail(1, "k2", codes.Internal, 510, 520),
			},
			final: state(),
			want: Report{
				Calls:  4,
				Failed: map[codes.Code]int{codes.Unavailable: 2, codes.DeadlineExceeded: 1, codes.Internal: 1},
			},
		},
		{
			name:  "failed call whose write landed",
			ops:   []Op{fail(0, "k1", codes.DeadlineExceeded, 0, 500)},
			final: state(payment("k1", "A")),
			want:  Report{Calls: 1, Failed: map[codes.Code]int{codes.DeadlineExceeded: 1}},
		},
		{
			name:  "key reused with another payload keeps the original",
			ops:   []Op{ack(0, "k1", "A", 0, 10), with(fail(0, "k1", codes.FailedPrecondition, 20, 30), func(op *Op) { op.Req.AmountMinor = 999 })},
			final: state(payment("k1", "A")),
			want:  Report{Calls: 2, Acked: 1, Failed: map[codes.Code]int{codes.FailedPrecondition: 1}},
		},
		{
			name:  "acked then lost with its record",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: state(),
			want: Report{
				Calls: 1, Acked: 1, AckedLost: 1, LostKeys: 1,
				Anomalies: []Anomaly{{Kind: KindAckedLost, Key: "k1"}, {Kind: KindLostKey, Key: "k1"}},
			},
		},
		{
			name:  "acked then lost but its record",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: withRecord(state(), "k1", "A"),
			want: Report{
				Calls: 1, Acked: 1, AckedLost: 1, Dangling: 1,
				Anomalies: []Anomaly{{Kind: KindAckedLost, Key: "k1"}, {Kind: KindDangling, Key: "k1"}},
			},
		},
		{
			name: "acked, lost in failover and recreated by a retry",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				fail(0, "k2", codes.Unavailable, 20, 30),
				ack(1, "k1", "B", 40, 50),
			},
			final: state(payment("k1", "B")),
			want: Report{
				Calls: 3, Acked: 2, Failed: map[codes.Code]int{codes.Unavailable: 1},
				AckedLost: 1, DuplicateKeys: 1, ExtraPayments: 1,
				Anomalies: []Anomaly{{Kind: KindAckedLost, Key: "k1"}, {Kind: KindDuplicate, Key: "k1"}},
			},
		},
		{
			name:  "acked key whose record points elsewhere",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: withRecord(state(payment("k1", "A"), payment("k1", "B")), "k1", "B"),
			want: Report{
				Calls: 1, Acked: 1, LostKeys: 1, DuplicateKeys: 1, ExtraPayments: 1,
				Anomalies: []Anomaly{{Kind: KindLostKey, Key: "k1"}, {Kind: KindDuplicate, Key: "k1"}},
			},
		},
		{
			name:  "two acks of one key with different ids",
			ops:   []Op{ack(0, "k1", "A", 0, 10), ack(1, "k1", "B", 5, 15)},
			final: state(payment("k1", "A"), payment("k1", "B")),
			want: Report{
				Calls: 2, Acked: 2, DuplicateKeys: 1, ExtraPayments: 1,
				Anomalies: []Anomaly{{Kind: KindDuplicate, Key: "k1"}},
			},
		},
		{
			name:  "stored second payment for an acked key",
			ops:   []Op{ack(0, "k1", "A", 0, 10), ack(0, "k2", "C", 20, 30)},
			final: withRecord(state(payment("k1", "A"), payment("k1", "B"), payment("k2", "C")), "k1", "A"),
			want: Report{
				Calls: 2, Acked: 2, DuplicateKeys: 1, ExtraPayments: 1,
				Anomalies: []Anomaly{{Kind: KindDuplicate, Key: "k1"}},
			},
		},
		{
			name: "three payments for one key count two extra",
			ops:  []Op{ack(0, "k1", "A", 0, 10), ack(1, "k2", "D", 0, 10)},
			final: withRecord(state(payment("k1", "A"), payment("k1", "B"), payment("k1", "C"),
				payment("k2", "D"), payment("k2", "E")), "k1", "A"),
			want: Report{
				Calls: 2, Acked: 2, LostKeys: 1, DuplicateKeys: 2, ExtraPayments: 3,
				Anomalies: []Anomaly{
					{Kind: KindLostKey, Key: "k2"},
					{Kind: KindDuplicate, Key: "k1"}, {Kind: KindDuplicate, Key: "k2"},
				},
			},
		},
		{
			name: "replay with a different created_at",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				with(ack(1, "k1", "A", 20, 30), func(op *Op) { op.CreatedAt = op.CreatedAt.Add(time.Nanosecond) }),
			},
			final: state(payment("k1", "A")),
			want: Report{
				Calls: 2, Acked: 2, ReplayMismatches: 1,
				Anomalies: []Anomaly{{Kind: KindReplayMismatch, Key: "k1"}},
			},
		},
		{
			name: "replays with a different status and message",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				with(ack(1, "k1", "A", 20, 30), func(op *Op) { op.Status = 2 }),
				with(ack(2, "k1", "A", 40, 50), func(op *Op) { op.Message = "payment succeeded" }),
				ack(3, "k1", "A", 60, 70),
			},
			final: state(payment("k1", "A")),
			want: Report{
				Calls: 4, Acked: 4, ReplayMismatches: 2,
				Anomalies: []Anomaly{{Kind: KindReplayMismatch, Key: "k1"}, {Kind: KindReplayMismatch, Key: "k1"}},
			},
		},
		{
			name: "replay with the same instant in another location",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				with(ack(1, "k1", "A", 20, 30), func(op *Op) { op.CreatedAt = op.CreatedAt.In(time.FixedZone("X", 3600)) }),
			},
			final: state(payment("k1", "A")),
			want:  Report{Calls: 2, Acked: 2},
		},
		{
			name:  "wrong stored amount",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: state(with(payment("k1", "A"), func(p *Stored) { p.AmountMinor++ })),
			want: Report{
				Calls: 1, Acked: 1, FieldMismatches: 1,
				Anomalies: []Anomaly{{Kind: KindFieldMismatch, Key: "k1"}},
			},
		},
		{
			name:  "wrong stored currency and order count once",
			ops:   []Op{ack(0, "k1", "A", 0, 10), ack(1, "k1", "A", 20, 30)},
			final: state(with(payment("k1", "A"), func(p *Stored) { p.Currency, p.OrderID = "EUR", "other" })),
			want: Report{
				Calls: 2, Acked: 2, FieldMismatches: 1,
				Anomalies: []Anomaly{{Kind: KindFieldMismatch, Key: "k1"}},
			},
		},
		{
			name:  "acked payment stored under another key",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: withRecord(state(with(payment("k1", "A"), func(p *Stored) { p.Key = "k2" })), "k1", "A"),
			want: Report{
				Calls: 1, Acked: 1, FieldMismatches: 1, Dangling: 1,
				Anomalies: []Anomaly{{Kind: KindFieldMismatch, Key: "k2"}, {Kind: KindDangling, Key: "k1"}},
			},
		},
		{
			name:  "stored created_at differs from the ack",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: state(with(payment("k1", "A"), func(p *Stored) { p.CreatedAt = p.CreatedAt.Add(time.Millisecond) })),
			want: Report{
				Calls: 1, Acked: 1, FieldMismatches: 1,
				Anomalies: []Anomaly{{Kind: KindFieldMismatch, Key: "k1"}},
			},
		},
		{
			name:  "unacknowledged payment stored with another payload than its key was sent with",
			ops:   []Op{fail(0, "k1", codes.Unavailable, 0, 10)},
			final: state(with(payment("k1", "A"), func(p *Stored) { p.OrderID = "order-k9" })),
			want: Report{
				Calls: 1, Failed: map[codes.Code]int{codes.Unavailable: 1}, FieldMismatches: 1,
				Anomalies: []Anomaly{{Kind: KindFieldMismatch, Key: "k1"}},
			},
		},
		{
			name:  "dangling idempotency record",
			ops:   []Op{fail(0, "k1", codes.Unavailable, 0, 10)},
			final: withRecord(state(), "k1", "A"),
			want: Report{
				Calls: 1, Failed: map[codes.Code]int{codes.Unavailable: 1}, Dangling: 1,
				Anomalies: []Anomaly{{Kind: KindDangling, Key: "k1"}},
			},
		},
		{
			name:  "idempotency record pointing at another key's payment",
			final: withRecord(state(payment("k2", "B")), "k1", "B"),
			want: Report{
				Dangling:  1,
				Anomalies: []Anomaly{{Kind: KindDangling, Key: "k1"}},
			},
		},
		{
			name:  "orphan payment",
			ops:   []Op{fail(0, "k1", codes.Unavailable, 0, 10)},
			final: withoutRecord(state(payment("k1", "A")), "k1"),
			want: Report{
				Calls: 1, Failed: map[codes.Code]int{codes.Unavailable: 1}, Orphans: 1,
				Anomalies: []Anomaly{{Kind: KindOrphan, Key: "k1"}},
			},
		},
		{
			name:  "acked payment without its record",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: withoutRecord(state(payment("k1", "A")), "k1"),
			want: Report{
				Calls: 1, Acked: 1, LostKeys: 1, Orphans: 1,
				Anomalies: []Anomaly{{Kind: KindLostKey, Key: "k1"}, {Kind: KindOrphan, Key: "k1"}},
			},
		},
		{
			name: "empty history and store",
			want: Report{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(tt.ops, tt.final)
			if diff := cmp.Diff(tt.want, got, reportOpts...); diff != "" {
				t.Errorf("Check() mismatch (-want +got):\n%s", diff)
			}
			if got, want := got.OK(), len(tt.want.Anomalies) == 0; got != want {
				t.Errorf("Check().OK() = %t, want %t", got, want)
			}
		})
	}
}

// The details are what a person debugging a failed run reads: they must name
// the ids and values involved.
func TestCheckDetails(t *testing.T) {
	tests := []struct {
		name  string
		ops   []Op
		final Final
		want  []string // substrings of the first anomaly's detail
	}{
		{
			name:  "acked lost",
			ops:   []Op{ack(7, "k1", "A", 0, 10)},
			final: withRecord(state(), "k1", "A"),
			want:  []string{"payment_id A", "client 7", "10:00:00.010000"},
		},
		{
			name:  "lost key",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: withRecord(state(payment("k1", "A"), payment("k1", "B")), "k1", "B"),
			want:  []string{"points at B", "acknowledged [A]"},
		},
		{
			name:  "duplicate",
			ops:   []Op{ack(0, "k1", "A", 0, 10), ack(1, "k1", "B", 5, 15)},
			final: withRecord(state(payment("k1", "A"), payment("k1", "B"), payment("k1", "C")), "k1", "B"),
			want:  []string{"3 payment_ids [A B C]", "acknowledged [A B]", "record B", "stored [A B C]"},
		},
		{
			name: "replay mismatch",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				with(ack(1, "k1", "A", 20, 30), func(op *Op) { op.CreatedAt = op.CreatedAt.Add(time.Nanosecond) }),
			},
			final: state(payment("k1", "A")),
			want:  []string{"client 1", "2026-03-04T10:00:00.12345679Z", "client 0 first got", "2026-03-04T10:00:00.123456789Z"},
		},
		{
			name:  "field mismatch",
			ops:   []Op{ack(0, "k1", "A", 0, 10)},
			final: state(with(payment("k1", "A"), func(p *Stored) { p.AmountMinor = 1 })),
			want:  []string{"payment_id A", `stored 1 USD for order "order-k1"`, `acknowledged for 1234 USD`},
		},
		{
			name:  "orphan",
			final: withoutRecord(state(payment("k1", "A")), "k1"),
			want:  []string{"payment_id A"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.ops, tt.final)
			if len(r.Anomalies) == 0 {
				t.Fatalf("Check() found no anomaly, want one")
			}
			for _, w := range tt.want {
				if got := r.Anomalies[0].Detail; !strings.Contains(got, w) {
					t.Errorf("anomaly detail = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

func TestCheckUnavailable(t *testing.T) {
	tests := []struct {
		name              string
		ops               []Op
		want              Interval
		firstAck, lastAck time.Time
	}{
		{
			name: "no calls",
		},
		{
			name: "no ack spans the whole run",
			ops:  []Op{fail(0, "k1", codes.Unavailable, 100, 200), fail(1, "k2", codes.Unavailable, 150, 900)},
			want: Interval{From: at(100), To: at(900)},
		},
		{
			name: "gap between acks",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				ack(0, "k2", "B", 10, 20),
				fail(0, "k3", codes.Unavailable, 20, 500),
				ack(0, "k3", "C", 500, 1500),
				ack(0, "k4", "D", 1500, 1510),
			},
			want:     Interval{From: at(20), To: at(1500)},
			firstAck: at(10), lastAck: at(1510),
		},
		{
			name: "gap after the last ack until the run ends",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				ack(0, "k2", "B", 10, 20),
				fail(0, "k3", codes.Unavailable, 20, 3000),
			},
			want:     Interval{From: at(20), To: at(3000)},
			firstAck: at(10), lastAck: at(20),
		},
		{
			name: "gap before the first ack",
			ops: []Op{
				fail(0, "k1", codes.Unavailable, 0, 700),
				ack(0, "k1", "A", 700, 800),
				ack(0, "k2", "B", 800, 810),
			},
			want:     Interval{From: at(0), To: at(800)},
			firstAck: at(800), lastAck: at(810),
		},
		{
			name: "acks completing out of start order",
			ops: []Op{
				ack(0, "k1", "A", 0, 900), // slow, started first
				ack(1, "k2", "B", 10, 20),
				ack(2, "k3", "C", 30, 40),
			},
			want:     Interval{From: at(40), To: at(900)},
			firstAck: at(20), lastAck: at(900),
		},
		{
			name: "equal gaps pick the earliest",
			ops: []Op{
				ack(0, "k1", "A", 0, 100),
				ack(0, "k2", "B", 100, 200),
			},
			want:     Interval{From: at(0), To: at(100)},
			firstAck: at(100), lastAck: at(200),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.ops, Final{})
			if diff := cmp.Diff(tt.want, r.Unavailable); diff != "" {
				t.Errorf("Unavailable mismatch (-want +got):\n%s", diff)
			}
			if !r.FirstAck.Equal(tt.firstAck) || !r.LastAck.Equal(tt.lastAck) {
				t.Errorf("acks from %v to %v, want from %v to %v", r.FirstAck, r.LastAck, tt.firstAck, tt.lastAck)
			}
			if got, want := r.Unavailable.Duration(), tt.want.To.Sub(tt.want.From); got != want {
				t.Errorf("Unavailable.Duration() = %v, want %v", got, want)
			}
		})
	}
}

// Check must not depend on the order in which workers recorded nor on map
// iteration: two runs over the same history must read the same.
func TestCheckDeterministic(t *testing.T) {
	var ops []Op
	final := state()
	for i := range 40 {
		k, id := fmt.Sprintf("k%02d", i), fmt.Sprintf("P%02d", i)
		ops = append(ops, ack(i%4, k, id, i, i+5), ack((i+1)%4, k, id, i, i+5))
		switch i % 4 {
		case 0: // clean
			final.Payments[id], final.Keys[k] = payment(k, id), id
		case 1: // lost
		case 2: // duplicated
			final.Payments[id], final.Payments[id+"x"], final.Keys[k] = payment(k, id), payment(k, id+"x"), id
		case 3: // orphaned and wrong
			final.Payments[id] = with(payment(k, id), func(p *Stored) { p.AmountMinor = 1 })
		}
	}
	want := Check(ops, final)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		shuffled := slices.Clone(ops)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := Check(shuffled, final)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Check() of shuffle %d differs (-first +shuffled):\n%s", i, diff)
		}
	}
	if want.OK() {
		t.Errorf("Check().OK() = true, want false: %v", want)
	}
}

func TestCheckCapsAnomaliesButCountsAll(t *testing.T) {
	final := state()
	const orphans = MaxAnomalies + 10
	for i := range orphans {
		final.Payments[fmt.Sprint(i)] = payment(fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	r := Check(nil, final)
	if r.Orphans != orphans {
		t.Errorf("Orphans = %d, want %d", r.Orphans, orphans)
	}
	if got := len(r.Anomalies); got != MaxAnomalies {
		t.Errorf("len(Anomalies) = %d, want %d", got, MaxAnomalies)
	}
	if r.Omitted != 10 {
		t.Errorf("Omitted = %d, want 10", r.Omitted)
	}
	if s := r.String(); !strings.Contains(s, "60 anomalies") || !strings.Contains(s, "and 55 more") {
		t.Errorf("String() = %q, want it to say 60 anomalies and 55 more", s)
	}
}

func TestReportOK(t *testing.T) {
	tests := []struct {
		name   string
		report Report
		want   bool
	}{
		{name: "zero", report: Report{}, want: true},
		{
			name:   "failures and unavailability only",
			report: Report{Calls: 3, Failed: map[codes.Code]int{codes.Unavailable: 3}, Unavailable: Interval{From: at(0), To: at(9000)}},
			want:   true,
		},
		{name: "acked lost", report: Report{AckedLost: 1}},
		{name: "lost keys", report: Report{LostKeys: 1}},
		{name: "duplicate keys", report: Report{DuplicateKeys: 1}},
		{name: "extra payments", report: Report{ExtraPayments: 1}},
		{name: "replay mismatches", report: Report{ReplayMismatches: 1}},
		{name: "field mismatches", report: Report{FieldMismatches: 1}},
		{name: "dangling", report: Report{Dangling: 1}},
		{name: "orphans", report: Report{Orphans: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.report.OK(); got != tt.want {
				t.Errorf("OK() = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestReportString(t *testing.T) {
	tests := []struct {
		name    string
		ops     []Op
		final   Final
		want    []string
		notWant []string
	}{
		{
			name: "clean",
			ops: []Op{
				ack(0, "k1", "A", 0, 10),
				fail(0, "k2", codes.Unavailable, 10, 20),
				fail(0, "k2", codes.DeadlineExceeded, 20, 1500),
				ack(0, "k2", "B", 1500, 1510),
			},
			final: state(payment("k1", "A"), payment("k2", "B")),
			want: []string{
				"ok: 4 calls, 2 acked, 2 failed (DeadlineExceeded 1, Unavailable 1)",
				"acked lost 0", "duplicate keys 0 (extra payments 0)", "orphans 0",
				"longest unavailable 1.5s (10:00:00.010000 to 10:00:01.510000)",
				"acks from 10:00:00.010000 to 10:00:01.510000",
			},
			notWant: []string{"NOT OK", "anomalies"},
		},
		{
			name:  "no ack",
			ops:   []Op{fail(0, "k1", codes.Unavailable, 0, 10)},
			final: state(),
			want:  []string{"ok: 1 calls, 0 acked, 1 failed (Unavailable 1)", "longest unavailable 10ms"},
			// No ack time to print rather than year one.
			notWant: []string{"acks from"},
		},
		{
			name:  "anomalies",
			ops:   []Op{ack(0, "k1", "A", 0, 10), ack(1, "k1", "B", 5, 15)},
			final: withoutRecord(state(payment("k1", "B")), "k1"),
			want: []string{
				"NOT OK: 2 calls, 2 acked, 0 failed;", "acked lost 1", "lost keys 1",
				"duplicate keys 1 (extra payments 1)", "orphans 1",
				`4 anomalies: [acked-lost "k1": payment_id A`, `[orphan "k1": payment_id B`,
			},
			notWant: []string{"more"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Check(tt.ops, tt.final).String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("String() = %q, want it to contain %q", s, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(s, w) {
					t.Errorf("String() = %q, want it not to contain %q", s, w)
				}
			}
		})
	}
}

func TestRecorderConcurrent(t *testing.T) {
	const workers, perWorker = 8, 200
	var (
		rec     Recorder
		want    []Op
		writers sync.WaitGroup
	)
	for w := range workers {
		var mine []Op
		for i := range perWorker {
			// Starts interleave across workers and run backwards within one,
			// so recording order is never the sorted order.
			start := (perWorker-i)*workers + w
			mine = append(mine, fail(w, fmt.Sprintf("k%d-%d", w, i), codes.Unavailable, start, start+1))
		}
		want = append(want, mine...)
		writers.Go(func() {
			for _, op := range mine {
				rec.Record(op)
			}
		})
	}
	// A reader races the writers: -race checks the locking, the length check
	// that a snapshot never goes backwards.
	done := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		last := 0
		for {
			select {
			case <-done:
				return
			default:
			}
			n := len(rec.Ops())
			if n < last {
				t.Errorf("len(Ops()) = %d after %d", n, last)
				return
			}
			last = n
		}
	})
	writers.Wait()
	close(done)
	reader.Wait()

	got := rec.Ops()
	slices.SortFunc(want, func(a, b Op) int { return a.Start.Compare(b.Start) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Ops() mismatch (-want +got):\n%s", diff)
	}

	got[0].Key = "changed"
	if again := rec.Ops(); again[0].Key == "changed" {
		t.Errorf("Ops()[0].Key = %q after changing an earlier result, want a copy", again[0].Key)
	}
}

func TestRecorderZeroValue(t *testing.T) {
	var rec Recorder
	if got := rec.Ops(); len(got) != 0 {
		t.Errorf("Ops() = %v, want empty", got)
	}
}
