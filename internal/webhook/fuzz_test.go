package webhook

import (
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// FuzzVerify feeds the signature parser arbitrary headers and bodies. It must
// never panic, and must never accept anything it did not sign.
func FuzzVerify(f *testing.F) {
	body := []byte(`{"type":"payment.succeeded"}`)
	f.Add("msg_1", strconv.FormatInt(now.Unix(), 10), Sign(keyA, "msg_1", now.Unix(), body), body)
	f.Add("msg_1", "0", "v1,"+"AAAA v1,BBBB", []byte{})
	f.Add("", "", "", []byte(nil))
	f.Add("id", "99999999999999999999", "v1,,,,", []byte("x"))
	v := NewVerifier([][]byte{keyA}, 5*time.Minute, func() time.Time { return now })
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		err := v.Verify(id, ts, sig, body)
		if err != nil && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrTimestamp) {
			t.Fatalf("Verify() = %v, want nil, ErrSignature or ErrTimestamp", err)
		}
		if err == nil {
			if _, perr := strconv.ParseInt(ts, 10, 64); perr != nil {
				t.Fatalf("Verify() accepted a non-numeric timestamp %q", ts)
			}
			// Acceptance means one listed signature is ours for exactly
			// these bytes.
			want := "v1," + base64.StdEncoding.EncodeToString(mac(keyA, id, ts, body))
			if !slices.Contains(strings.Fields(sig), want) {
				t.Fatalf("Verify() accepted %q, which does not carry the signature of this message", sig)
			}
		}
	})
}

// FuzzDecodeEvent feeds the decoder arbitrary bodies. It must never panic,
// must fail only with the documented errors, and anything it accepts must be
// a valid event.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"type":"payment.succeeded","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00Z","amount_minor":1234,"currency":"USD"}`))
	f.Add([]byte(`{"type":"payment.failed","payment_id":"` + validID + `","occurred_at":"2026-11-22T10:00:00+01:00","amount_minor":1,"currency":"JPY","failure_reason":"x","payer":{"phone":"+441234567"}}`))
	f.Add([]byte(`{"payer":{"phone":1}}`))
	f.Add([]byte(`{"amount_minor":-9223372036854775808}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{} trailing`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeEvent(body)
		var verr *payments.ValidationError
		switch {
		case err == nil:
			if ev.Type != TypeSucceeded && ev.Type != TypeFailed {
				t.Fatalf("accepted event with type %q", ev.Type)
			}
			if ev.AmountMinor <= 0 || ev.AmountMinor > payments.MaxAmountMinor {
				t.Fatalf("accepted amount %d", ev.AmountMinor)
			}
			if _, err := payments.ParseID(ev.PaymentID); err != nil {
				t.Fatalf("accepted payment_id %q", ev.PaymentID)
			}
			if (ev.Type == TypeFailed) != (ev.FailureReason != "") {
				t.Fatalf("accepted %s with failure_reason %q", ev.Type, ev.FailureReason)
			}
		case errors.Is(err, ErrMalformedJSON):
		case errors.As(err, &verr):
			if len(verr.Violations) == 0 {
				t.Fatal("ValidationError without violations")
			}
		default:
			t.Fatalf("DecodeEvent() = %v, want a documented error", err)
		}
	})
}
