// Package history owns the verdict of the failover tests: it records every
// RequestPayment attempt that load workers make while Redis is failed over or
// partitioned, and checks that history, together with the state read back
// from Redis afterwards, against payments-svc's exactly-once promise.
//
// The checker trusts nothing but what clients saw and what the store holds:
// an acknowledged payment must still be stored under its key, a key must own
// exactly one payment, replays must repeat the original answer, and the
// store must hold no half-written payment (an idempotency record without its
// payment, or a payment without its idempotency record).
package history

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Request is the part of a RequestPayment call that its payment must keep.
type Request struct {
	AmountMinor int64
	Currency    string
	OrderID     string
}

// Op is one RequestPayment attempt as the client saw it.
type Op struct {
	Client     int // the load worker that made the call
	Key        string
	Req        Request
	Start, End time.Time
	Code       codes.Code // codes.OK when the call was acknowledged

	// The response, set when Code is codes.OK.
	PaymentID string
	Status    int32
	Message   string
	CreatedAt time.Time
}

// Stored is one payment record read back from the store after the run.
type Stored struct {
	PaymentID   string
	Key         string
	AmountMinor int64
	Currency    string
	OrderID     string
	Status      int32
	CreatedAt   time.Time
}

func (s Stored) request() Request {
	return Request{AmountMinor: s.AmountMinor, Currency: s.Currency, OrderID: s.OrderID}
}

// Final is the store's state read back after the run.
//
// Redis files an idempotency record under a hash of its key, so Keys is built
// by looking up the keys the history used; a record that none of them
// explains belongs in Keys under its Redis key name, so that it is still
// judged (it dangles, or duplicates a payment's key).
type Final struct {
	Payments map[string]Stored // every payment record found, by payment_id
	Keys     map[string]string // idempotency key -> payment_id its record points at
}

// Recorder collects Ops from many goroutines. Its zero value is ready to use.
type Recorder struct {
	mu  sync.Mutex
	ops []Op
}

// Record adds one attempt to the history.
func (r *Recorder) Record(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

// Ops returns a copy of the history sorted by Start.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	ops := slices.Clone(r.ops)
	r.mu.Unlock()
	sortOps(ops)
	return ops
}

// sortOps orders by Start and breaks ties so that Check does not depend on
// the order in which workers happened to record.
func sortOps(ops []Op) {
	slices.SortStableFunc(ops, func(a, b Op) int {
		return cmp.Or(a.Start.Compare(b.Start), a.End.Compare(b.End),
			cmp.Compare(a.Client, b.Client), cmp.Compare(a.Key, b.Key))
	})
}

// Anomaly kinds, one per check.
const (
	KindAckedLost      = "acked-lost"
	KindLostKey        = "lost-key"
	KindDuplicate      = "duplicate"
	KindReplayMismatch = "replay-mismatch"
	KindFieldMismatch  = "field-mismatch"
	KindDangling       = "dangling"
	KindOrphan         = "orphan"
)

// MaxAnomalies caps Report.Anomalies; the counts stay exact beyond it.
const MaxAnomalies = 50

// Anomaly is one violation found in a history.
type Anomaly struct {
	Kind   string
	Key    string // idempotency key it concerns
	Detail string
}

// Interval is a span of time.
type Interval struct {
	From, To time.Time
}

// Duration is the length of the interval.
func (i Interval) Duration() time.Duration { return i.To.Sub(i.From) }

// Report is the verdict on a history.
type Report struct {
	Calls  int
	Acked  int
	Failed map[codes.Code]int

	AckedLost        int // acknowledged payment_ids no longer stored
	LostKeys         int // acknowledged keys whose record is gone or points at an unacknowledged id
	DuplicateKeys    int // keys bound to more than one payment_id
	ExtraPayments    int // payment_ids beyond the first, summed over DuplicateKeys
	ReplayMismatches int // acks repeating a payment_id with another status, message or created_at
	FieldMismatches  int // payments stored with other fields than were requested or acknowledged
	Dangling         int // idempotency records pointing at a missing payment or another key's
	Orphans          int // payments whose key has no idempotency record

	// Unavailable is the longest stretch of the run, from the first call's
	// Start to the last call's End, in which no acknowledged call completed.
	Unavailable       Interval
	FirstAck, LastAck time.Time // End of the first and the last acknowledged call

	Anomalies []Anomaly // the first MaxAnomalies found, in a stable order
	Omitted   int       // anomalies found beyond MaxAnomalies
}

// OK reports whether the history kept exactly-once: nothing acknowledged was
// lost, no key has two payments, replays agree, fields match and nothing is
// half-written. Failed calls and unavailability do not count against it:
// whether the run made enough progress is the caller's judgement.
func (r Report) OK() bool {
	return r.AckedLost == 0 && r.LostKeys == 0 && r.DuplicateKeys == 0 && r.ExtraPayments == 0 &&
		r.ReplayMismatches == 0 && r.FieldMismatches == 0 && r.Dangling == 0 && r.Orphans == 0
}

// shownAnomalies is how many anomalies String prints.
const shownAnomalies = 5

// String is a one-paragraph summary for test logs.
func (r Report) String() string {
	verdict := "ok"
	if !r.OK() {
		verdict = "NOT OK"
	}
	s := fmt.Sprintf("%s: %d calls, %d acked, %d failed%s; "+
		"acked lost %d, lost keys %d, duplicate keys %d (extra payments %d), "+
		"replay mismatches %d, field mismatches %d, dangling %d, orphans %d; "+
		"longest unavailable %v",
		verdict, r.Calls, r.Acked, r.Calls-r.Acked, failedByCode(r.Failed),
		r.AckedLost, r.LostKeys, r.DuplicateKeys, r.ExtraPayments,
		r.ReplayMismatches, r.FieldMismatches, r.Dangling, r.Orphans,
		r.Unavailable.Duration())
	if !r.Unavailable.From.IsZero() {
		s += fmt.Sprintf(" (%s to %s)", clock(r.Unavailable.From), clock(r.Unavailable.To))
	}
	if !r.FirstAck.IsZero() {
		s += fmt.Sprintf(", acks from %s to %s", clock(r.FirstAck), clock(r.LastAck))
	}
	total := len(r.Anomalies) + r.Omitted
	if total == 0 {
		return s
	}
	s += fmt.Sprintf("; %d anomalies:", total)
	for _, a := range r.Anomalies[:min(shownAnomalies, len(r.Anomalies))] {
		s += fmt.Sprintf(" [%s %q: %s]", a.Kind, a.Key, a.Detail)
	}
	if more := total - min(shownAnomalies, len(r.Anomalies)); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func failedByCode(failed map[codes.Code]int) string {
	if len(failed) == 0 {
		return ""
	}
	s := " ("
	for i, c := range sortedKeys(failed) {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%v %d", c, failed[c])
	}
	return s + ")"
}

func clock(t time.Time) string { return t.Format("15:04:05.000000") }

// Check judges a history of calls against the state read back afterwards.
// It is deterministic: the same history and state give the same Report,
// whatever the order of ops and of map iteration.
func Check(ops []Op, final Final) Report {
	ops = slices.Clone(ops)
	sortOps(ops)
	c := newChecker(ops, final)
	c.r.Unavailable, c.r.FirstAck, c.r.LastAck = unavailable(ops)
	c.ackedLost()
	c.lostKeys()
	c.duplicates()
	c.replays()
	c.fields()
	c.dangling()
	c.orphans()
	return c.r
}

type checker struct {
	final Final
	r     Report

	sent       map[string][]Request // key -> every request sent with it
	acks       map[string][]Op      // key -> its acknowledged calls, by Start
	ackedIDs   map[string][]string  // key -> distinct acknowledged payment_ids, sorted
	acksOfID   map[string][]Op      // payment_id -> its acknowledged calls, by Start
	storedIDs  map[string][]string  // key -> payment_ids stored with that key, sorted
	allKeys    []string             // every key seen anywhere, sorted
	paymentIDs []string             // Final.Payments' ids, sorted
}

func newChecker(ops []Op, final Final) *checker {
	c := &checker{
		final:     final,
		r:         Report{Calls: len(ops), Failed: map[codes.Code]int{}},
		sent:      map[string][]Request{},
		acks:      map[string][]Op{},
		ackedIDs:  map[string][]string{},
		acksOfID:  map[string][]Op{},
		storedIDs: map[string][]string{},
	}
	keys := map[string]bool{}
	for _, op := range ops {
		keys[op.Key] = true
		c.sent[op.Key] = append(c.sent[op.Key], op.Req)
		if op.Code != codes.OK {
			c.r.Failed[op.Code]++
			continue
		}
		c.r.Acked++
		c.acks[op.Key] = append(c.acks[op.Key], op)
		if !slices.Contains(c.ackedIDs[op.Key], op.PaymentID) {
			c.ackedIDs[op.Key] = append(c.ackedIDs[op.Key], op.PaymentID)
		}
		c.acksOfID[op.PaymentID] = append(c.acksOfID[op.PaymentID], op)
	}
	for _, ids := range c.ackedIDs {
		slices.Sort(ids)
	}
	c.paymentIDs = sortedKeys(final.Payments)
	for _, id := range c.paymentIDs {
		k := final.Payments[id].Key
		keys[k] = true
		c.storedIDs[k] = append(c.storedIDs[k], id)
	}
	for k := range final.Keys {
		keys[k] = true
	}
	c.allKeys = sortedKeys(keys)
	return c
}

func (c *checker) add(kind, key, format string, args ...any) {
	if len(c.r.Anomalies) >= MaxAnomalies {
		c.r.Omitted++
		return
	}
	c.r.Anomalies = append(c.r.Anomalies, Anomaly{Kind: kind, Key: key, Detail: fmt.Sprintf(format, args...)})
}

func (c *checker) ackedLost() {
	for _, id := range sortedKeys(c.acksOfID) {
		if _, ok := c.final.Payments[id]; ok {
			continue
		}
		c.r.AckedLost++
		first := c.acksOfID[id][0]
		c.add(KindAckedLost, first.Key, "payment_id %s acknowledged to client %d at %s is not stored",
			id, first.Client, clock(first.End))
	}
}

func (c *checker) lostKeys() {
	for _, k := range sortedKeys(c.ackedIDs) {
		id, ok := c.final.Keys[k]
		switch {
		case !ok:
			c.r.LostKeys++
			c.add(KindLostKey, k, "no idempotency record; acknowledged %v", c.ackedIDs[k])
		case !slices.Contains(c.ackedIDs[k], id):
			c.r.LostKeys++
			c.add(KindLostKey, k, "idempotency record points at %s; acknowledged %v", id, c.ackedIDs[k])
		}
	}
}

// duplicates finds keys bound to several payments by any witness: what
// clients were told, what the idempotency record says, what payments say.
func (c *checker) duplicates() {
	for _, k := range c.allKeys {
		ids := slices.Clone(c.ackedIDs[k])
		ids = append(ids, c.storedIDs[k]...)
		rec, hasRec := c.final.Keys[k]
		if hasRec {
			ids = append(ids, rec)
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) < 2 {
			continue
		}
		c.r.DuplicateKeys++
		c.r.ExtraPayments += len(ids) - 1
		record := "none"
		if hasRec {
			record = rec
		}
		c.add(KindDuplicate, k, "%d payment_ids %v: acknowledged %v, idempotency record %s, stored %v",
			len(ids), ids, c.ackedIDs[k], record, c.storedIDs[k])
	}
}

// replays compares every ack of a payment_id with the first one: a replay
// must be the original response, to the nanosecond.
func (c *checker) replays() {
	for _, k := range sortedKeys(c.acks) {
		first := map[string]Op{}
		for _, op := range c.acks[k] {
			orig, ok := first[op.PaymentID]
			if !ok {
				first[op.PaymentID] = op
				continue
			}
			if op.Status == orig.Status && op.Message == orig.Message && op.CreatedAt.Equal(orig.CreatedAt) {
				continue
			}
			c.r.ReplayMismatches++
			c.add(KindReplayMismatch, k, "payment_id %s: client %d got status %d, created_at %s, message %q; "+
				"client %d first got status %d, created_at %s, message %q",
				op.PaymentID, op.Client, op.Status, op.CreatedAt.Format(time.RFC3339Nano), op.Message,
				orig.Client, orig.Status, orig.CreatedAt.Format(time.RFC3339Nano), orig.Message)
		}
	}
}

// fields counts each stored payment at most once: against every ack of it,
// then, when unacknowledged, against what its key was sent with. The first
// ack's created_at must be the stored one; later acks are replays() business.
func (c *checker) fields() {
	for _, id := range c.paymentIDs {
		p := c.final.Payments[id]
		if detail := c.fieldMismatch(p); detail != "" {
			c.r.FieldMismatches++
			c.add(KindFieldMismatch, p.Key, "payment_id %s: %s", id, detail)
		}
	}
}

func (c *checker) fieldMismatch(p Stored) string {
	stored := p.request()
	for i, op := range c.acksOfID[p.PaymentID] {
		switch {
		case op.Key != p.Key:
			return fmt.Sprintf("stored with key %q, acknowledged for key %q", p.Key, op.Key)
		case op.Req != stored:
			return fmt.Sprintf("stored %s, acknowledged for %s", describe(stored), describe(op.Req))
		case i == 0 && !op.CreatedAt.Equal(p.CreatedAt):
			return fmt.Sprintf("stored created_at %s, acknowledged %s",
				p.CreatedAt.Format(time.RFC3339Nano), op.CreatedAt.Format(time.RFC3339Nano))
		}
	}
	// A key may legitimately have been sent with several payloads (all but
	// one refused as IDEMPOTENCY_KEY_REUSED); the stored one must be among them.
	if sent := c.sent[p.Key]; len(sent) > 0 && !slices.Contains(sent, stored) {
		return fmt.Sprintf("stored %s, key was sent with %s", describe(stored), describe(sent[0]))
	}
	return ""
}

func describe(r Request) string {
	return fmt.Sprintf("%d %s for order %q", r.AmountMinor, r.Currency, r.OrderID)
}

func (c *checker) dangling() {
	for _, k := range sortedKeys(c.final.Keys) {
		id := c.final.Keys[k]
		p, ok := c.final.Payments[id]
		switch {
		case !ok:
			c.r.Dangling++
			c.add(KindDangling, k, "idempotency record points at payment_id %s, which is not stored", id)
		case p.Key != k:
			c.r.Dangling++
			c.add(KindDangling, k, "idempotency record points at payment_id %s, stored for key %q", id, p.Key)
		}
	}
}

func (c *checker) orphans() {
	for _, id := range c.paymentIDs {
		k := c.final.Payments[id].Key
		if _, ok := c.final.Keys[k]; !ok {
			c.r.Orphans++
			c.add(KindOrphan, k, "payment_id %s is stored but its key has no idempotency record", id)
		}
	}
}

// unavailable returns the longest gap between consecutive ack completions,
// counting the run's start and end as boundaries so that an outage the
// service never recovered from, or never got out of, is measured too. Ops
// must be sorted by Start.
func unavailable(ops []Op) (longest Interval, firstAck, lastAck time.Time) {
	if len(ops) == 0 {
		return Interval{}, time.Time{}, time.Time{}
	}
	end := ops[0].End
	var acks []time.Time
	for _, op := range ops {
		if op.End.After(end) {
			end = op.End
		}
		if op.Code == codes.OK {
			acks = append(acks, op.End)
		}
	}
	slices.SortFunc(acks, time.Time.Compare)
	prev := ops[0].Start
	for _, t := range append(acks, end) {
		if t.Sub(prev) > longest.Duration() {
			longest = Interval{From: prev, To: t}
		}
		prev = t
	}
	if len(acks) > 0 {
		firstAck, lastAck = acks[0], acks[len(acks)-1]
	}
	return longest, firstAck, lastAck
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
