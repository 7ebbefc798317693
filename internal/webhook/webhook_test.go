package webhook

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/payments-svc/payments-svc/internal/payments"
)

var (
	keyA = []byte("secret-a-secret-a-secret-a-32byt")
	keyB = []byte("secret-b-secret-b-secret-b-32byt")
	now  = time.Unix(1_790_000_000, 0)
)

func TestParseSecret(t *testing.T) {
	good := "whsec_" + base64.StdEncoding.EncodeToString(keyA)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "valid", in: good},
		{name: "surrounding space", in: " " + good + " "},
		{name: "missing prefix", in: base64.StdEncoding.EncodeToString(keyA), wantErr: true},
		{name: "not base64", in: "whsec_***", wantErr: true},
		{name: "too short", in: "whsec_" + base64.StdEncoding.EncodeToString([]byte("short")), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParseSecret(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseSecret(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && string(key) != string(keyA) {
				t.Errorf("ParseSecret() = %q, want %q", key, keyA)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"type":"payment.succeeded"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sigA := Sign(keyA, "msg_1", now.Unix(), body)
	sigB := Sign(keyB, "msg_1", now.Unix(), body)
	v := NewVerifier([][]byte{keyA}, 5*time.Minute, func() time.Time { return now })
	rotating := NewVerifier([][]byte{keyB, keyA}, 5*time.Minute, func() time.Time { return now })

	tests := []struct {
		name      string
		verifier  *Verifier
		id, ts    string
		signature string
		body      []byte
		want      error
	}{
		{name: "valid", id: "msg_1", ts: ts, signature: sigA, body: body},
		{name: "one of several signatures matches", id: "msg_1", ts: ts, signature: "v1,AAAA " + sigB + " " + sigA, body: body},
		{name: "old secret still accepted during rotation", verifier: rotating, id: "msg_1", ts: ts, signature: sigA, body: body},
		{name: "new secret accepted during rotation", verifier: rotating, id: "msg_1", ts: ts, signature: sigB, body: body},
		{name: "unknown version ignored", id: "msg_1", ts: ts, signature: "v2,xyz " + sigA, body: body},
		{name: "wrong secret", id: "msg_1", ts: ts, signature: sigB, body: body, want: ErrSignature},
		{name: "tampered body", id: "msg_1", ts: ts, signature: sigA, body: []byte(`{"type":"payment.failed"}`), want: ErrSignature},
		{name: "tampered id", id: "msg_2", ts: ts, signature: sigA, body: body, want: ErrSignature},
		{name: "tampered timestamp", id: "msg_1", ts: strconv.FormatInt(now.Unix()+1, 10), signature: sigA, body: body, want: ErrSignature},
		{name: "missing id", ts: ts, signature: sigA, body: body, want: ErrSignature},
		{name: "missing timestamp", id: "msg_1", signature: sigA, body: body, want: ErrSignature},
		{name: "missing signature", id: "msg_1", ts: ts, body: body, want: ErrSignature},
		{name: "non-numeric timestamp", id: "msg_1", ts: "yesterday", signature: sigA, body: body, want: ErrSignature},
		{name: "signature without version", id: "msg_1", ts: ts, signature: strings.TrimPrefix(sigA, "v1,"), body: body, want: ErrSignature},
		{name: "signature not base64", id: "msg_1", ts: ts, signature: "v1,!!!", body: body, want: ErrSignature},
		{name: "too many signatures", id: "msg_1", ts: ts, signature: strings.Repeat("v1,AAAA ", 16) + sigA, body: body, want: ErrSignature},
		{name: "overlong id", id: strings.Repeat("i", 256), ts: ts, signature: sigA, body: body, want: ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vv := v
			if tt.verifier != nil {
				vv = tt.verifier
			}
			if got := vv.Verify(tt.id, tt.ts, tt.signature, tt.body); !errors.Is(got, tt.want) {
				t.Errorf("Verify() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	body := []byte(`{}`)
	v := NewVerifier([][]byte{keyA}, 5*time.Minute, func() time.Time { return now })
	tests := []struct {
		name   string
		offset time.Duration
		want   error
	}{
		{name: "now", offset: 0},
		{name: "just inside past", offset: -5 * time.Minute},
		{name: "just inside future", offset: 5 * time.Minute},
		{name: "stale", offset: -5*time.Minute - time.Second, want: ErrTimestamp},
		{name: "future", offset: 5*time.Minute + time.Second, want: ErrTimestamp},
		{name: "far future", offset: 1000 * time.Hour, want: ErrTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := now.Add(tt.offset).Unix()
			got := v.Verify("msg", strconv.FormatInt(ts, 10), Sign(keyA, "msg", ts, body), body)
			if !errors.Is(got, tt.want) {
				t.Errorf("Verify() at %s = %v, want %v", tt.offset, got, tt.want)
			}
		})
	}
	// A stale request with a bad signature learns only that the signature failed.
	stale := now.Add(-time.Hour).Unix()
	if got := v.Verify("msg", strconv.FormatInt(stale, 10), Sign(keyB, "msg", stale, body), body); !errors.Is(got, ErrSignature) {
		t.Errorf("Verify(stale, wrong key) = %v, want ErrSignature", got)
	}
}

const validID = "pay_01KAQ3X0Z5S8N6Q7R2T9V4W1Y3_3fa9c2d1"

func TestDecodeEvent(t *testing.T) {
	occurred := time.Date(2026, 11, 22, 11, 0, 0, 0, time.FixedZone("", 3600))
	tests := []struct {
		name       string
		body       string
		want       Event
		wantFields []string // violated fields; nil means success
		wantErr    error
	}{
		{
			name: "succeeded",
			body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T11:00:00+01:00","amount_minor":1234,"currency":"USD","payer":{"phone":"+14155550123"}}`,
			want: Event{Type: TypeSucceeded, PaymentID: validID, OccurredAt: occurred, AmountMinor: 1234, Currency: "USD", PayerPhone: "+14155550123"},
		},
		{
			name: "failed with reason, no payer",
			body: `{"type":"payment.failed","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":5,"currency":"JPY","failure_reason":"card_declined"}`,
			want: Event{Type: TypeFailed, PaymentID: validID, OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), AmountMinor: 5, Currency: "JPY", FailureReason: "card_declined"},
		},
		{name: "not json", body: `type=payment.succeeded`, wantErr: ErrMalformedJSON},
		{name: "array", body: `[]`, wantErr: ErrMalformedJSON},
		{name: "null", body: `null`, wantErr: ErrMalformedJSON},
		{name: "trailing data", body: `{"type":"payment.succeeded"} {}`, wantErr: ErrMalformedJSON},
		{name: "empty object", body: `{}`, wantFields: []string{"type", "payment_id", "occurred_at", "amount_minor", "currency"}},
		{
			name:       "unknown fields at both levels",
			body:       `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD","zeta":1,"alpha":2,"payer":{"phone":"+14155550123","email":"x"}}`,
			wantFields: []string{"alpha", "zeta", "payer.email"},
		},
		{
			name:       "every value wrong",
			body:       `{"type":"payment.refunded","payment_id":"pay_1","occurred_at":"2026-11-22 10:00","amount_minor":12.5,"currency":"usd","payer":{"phone":"0044123"}}`,
			wantFields: []string{"type", "payment_id", "occurred_at", "amount_minor", "currency", "payer.phone"},
		},
		{name: "rfc 3339 without offset", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00","amount_minor":1,"currency":"USD"}`, wantFields: []string{"occurred_at"}},
		{name: "amount as string", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":"1","currency":"USD"}`, wantFields: []string{"amount_minor"}},
		{name: "amount with exponent", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1e3,"currency":"USD"}`, wantFields: []string{"amount_minor"}},
		{name: "amount zero", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":0,"currency":"USD"}`, wantFields: []string{"amount_minor"}},
		{name: "type not a string", body: `{"type":7,"payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD"}`, wantFields: []string{"type"}},
		{name: "failed without reason", body: `{"type":"payment.failed","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD"}`, wantFields: []string{"failure_reason"}},
		{name: "succeeded with reason", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD","failure_reason":"x"}`, wantFields: []string{"failure_reason"}},
		{name: "empty reason", body: `{"type":"payment.failed","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD","failure_reason":""}`, wantFields: []string{"failure_reason"}},
		{name: "reason not a string", body: `{"type":"payment.failed","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD","failure_reason":5}`, wantFields: []string{"failure_reason"}},
		{name: "payer not an object", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD","payer":"+14155550123"}`, wantFields: []string{"payer"}},
		{name: "phone too long", body: `{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1,"currency":"USD","payer":{"phone":"+1234567890123456"}}`, wantFields: []string{"payer.phone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeEvent([]byte(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DecodeEvent() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if tt.wantFields != nil {
				var verr *payments.ValidationError
				if !errors.As(err, &verr) {
					t.Fatalf("DecodeEvent() error = %v, want *payments.ValidationError", err)
				}
				var fields []string
				for _, v := range verr.Violations {
					fields = append(fields, v.Field)
				}
				if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
					t.Errorf("violated fields mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEvent() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeEvent() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventSettlement(t *testing.T) {
	ev := Event{Type: TypeFailed, PaymentID: validID, AmountMinor: 1, Currency: "USD", FailureReason: "declined", OccurredAt: now}
	want := payments.Settlement{PaymentID: validID, Status: payments.StatusFailed, AmountMinor: 1, Currency: "USD", FailureReason: "declined", OccurredAt: now}
	if diff := cmp.Diff(want, ev.Settlement()); diff != "" {
		t.Errorf("Settlement() mismatch (-want +got):\n%s", diff)
	}
	ev.Type, ev.FailureReason = TypeSucceeded, ""
	if got := ev.Settlement().Status; got != payments.StatusSucceeded {
		t.Errorf("Settlement().Status = %v, want SUCCEEDED", got)
	}
}
