package payments

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFingerprint(t *testing.T) {
	base := validRequest()
	tests := []struct {
		name     string
		modify   func(*Request)
		wantSame bool
	}{
		{name: "identical", modify: func(*Request) {}, wantSame: true},
		{name: "different idempotency key", modify: func(r *Request) { r.IdempotencyKey = "other" }, wantSame: true},
		{name: "same metadata built in another order", modify: func(r *Request) {
			r.Metadata = map[string]string{}
			r.Metadata["cart"] = "3 items"
		}, wantSame: true},
		{name: "no metadata", modify: func(r *Request) { r.Metadata = nil }},
		{name: "amount", modify: func(r *Request) { r.AmountMinor++ }},
		{name: "currency", modify: func(r *Request) { r.Currency = "EUR" }},
		{name: "order id", modify: func(r *Request) { r.OrderID += "x" }},
		{name: "metadata value", modify: func(r *Request) { r.Metadata = map[string]string{"cart": "4 items"} }},
		{name: "metadata key", modify: func(r *Request) { r.Metadata = map[string]string{"Cart": "3 items"} }},
		{name: "extra metadata", modify: func(r *Request) { r.Metadata = map[string]string{"cart": "3 items", "x": ""} }},
		{name: "boundary shift between fields", modify: func(r *Request) {
			// "order-42"+"cart" must not collide with "order-4"+"2cart".
			r.OrderID = "order-4"
			r.Metadata = map[string]string{"2cart": "3 items"}
		}},
	}
	want := Fingerprint(base)
	if len(want) != 64 {
		t.Fatalf("Fingerprint() = %q, want 64 hex characters", want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validRequest()
			tt.modify(&req)
			got := Fingerprint(req)
			if (got == want) != tt.wantSame {
				t.Errorf("Fingerprint() = %s, base %s: same = %v, want %v", got, want, got == want, tt.wantSame)
			}
		})
	}
	// nil and empty metadata are the same on the wire, so they must be here.
	withNil, withEmpty := validRequest(), validRequest()
	withNil.Metadata, withEmpty.Metadata = nil, map[string]string{}
	if Fingerprint(withNil) != Fingerprint(withEmpty) {
		t.Errorf("Fingerprint() differs for nil and empty metadata, want equal")
	}
}

func TestNewIDRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	id := NewID("m_test", "key-1", now)
	if len(id) != idLen || !strings.HasPrefix(id, "pay_") {
		t.Fatalf("NewID() = %q, want pay_ prefix and %d characters", id, idLen)
	}
	tag, err := ParseID(id)
	if err != nil {
		t.Fatalf("ParseID(%q) error = %v", id, err)
	}
	if want := HashTag("m_test", "key-1"); tag != want {
		t.Errorf("ParseID(%q) tag = %q, want %q", id, tag, want)
	}
	later := NewID("m_test", "key-1", now.Add(time.Millisecond))
	if later <= id {
		t.Errorf("NewID at a later time = %q, want it to sort after %q", later, id)
	}
}

func TestHashTagScopesByMerchant(t *testing.T) {
	pairs := [][2]string{{"m_a", "k"}, {"m_b", "k"}, {"m_a", "k2"}, {"m_ab", "c"}, {"m_a", "bc"}, {"", "m_ak"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		tag := HashTag(p[0], p[1])
		if prev, dup := seen[tag]; dup {
			t.Errorf("HashTag(%q, %q) = HashTag(%q, %q) = %s, want distinct scopes to get distinct tags", p[0], p[1], prev[0], prev[1], tag)
		}
		seen[tag] = p
	}
}

func TestParseIDRejects(t *testing.T) {
	good := NewID("m_test", "key-1", time.Unix(1_700_000_000, 0))
	tests := map[string]string{
		"empty":               "",
		"no prefix":           "xay_" + good[4:],
		"short":               good[:len(good)-1],
		"long":                good + "0",
		"missing separator":   good[:30] + "-" + good[31:],
		"upper-case tag":      good[:31] + "ABCDEF12",
		"non-hex tag":         good[:31] + "zzzzzzzz",
		"lower-case ulid":     "pay_" + strings.ToLower(good[4:30]) + good[30:],
		"invalid ulid letter": "pay_" + "U" + good[5:],
		"ulid overflow":       "pay_" + "8" + good[5:],
	}
	for name, id := range tests {
		t.Run(name, func(t *testing.T) {
			if tag, err := ParseID(id); !errors.Is(err, ErrMalformedID) {
				t.Errorf("ParseID(%q) = %q, %v, want ErrMalformedID", id, tag, err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	req := validRequest()
	p := New(req, now)
	want := Payment{
		ID:             p.ID,
		Status:         StatusPending,
		AmountMinor:    1234,
		Currency:       "USD",
		OrderID:        "order-42",
		IdempotencyKey: req.IdempotencyKey,
		Message:        "payment of USD 12.34 for order order-42 accepted; awaiting provider confirmation",
		CreatedAt:      now,
		Metadata:       req.Metadata,
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("New() mismatch (-want +got):\n%s", diff)
	}
	if _, err := ParseID(p.ID); err != nil {
		t.Errorf("New().ID = %q does not parse: %v", p.ID, err)
	}
	wantReceipt := Receipt{PaymentID: p.ID, Status: StatusPending, Message: want.Message, IdempotencyKey: req.IdempotencyKey, CreatedAt: now}
	if diff := cmp.Diff(wantReceipt, p.Receipt()); diff != "" {
		t.Errorf("Receipt() mismatch (-want +got):\n%s", diff)
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		s           Status
		wantName    string
		wantSettled bool
	}{
		{StatusUnspecified, "UNSPECIFIED", false},
		{StatusPending, "PENDING", false},
		{StatusSucceeded, "SUCCEEDED", true},
		{StatusFailed, "FAILED", true},
		{Status(9), "UNKNOWN", false},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			if got := tt.s.String(); got != tt.wantName {
				t.Errorf("String() = %q, want %q", got, tt.wantName)
			}
			if got := tt.s.Settled(); got != tt.wantSettled {
				t.Errorf("Settled() = %v, want %v", got, tt.wantSettled)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	tests := []struct {
		name   string
		status Status
		want   string
	}{
		{"pending", StatusPending, "payment of EUR 12.50 for order o-1 accepted; awaiting provider confirmation"},
		{"succeeded", StatusSucceeded, "payment of EUR 12.50 for order o-1 succeeded"},
		{"failed", StatusFailed, "payment of EUR 12.50 for order o-1 failed: card declined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Message(tt.status, 1250, "EUR", "o-1", "card declined"); got != tt.want {
				t.Errorf("Message(%v) = %q, want %q", tt.status, got, tt.want)
			}
		})
	}
}
