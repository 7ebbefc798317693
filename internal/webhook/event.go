package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// Event types a provider sends.
const (
	TypeSucceeded = "payment.succeeded"
	TypeFailed    = "payment.failed"
)

// MaxFailureReasonLen bounds failure_reason, which ends up in the payment's
// message.
const MaxFailureReasonLen = 500

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// Event is a decoded, validated settlement event.
type Event struct {
	Type          string
	PaymentID     string
	OccurredAt    time.Time
	AmountMinor   int64
	Currency      string
	FailureReason string
	PayerPhone    string
}

// Settlement is what the event asks of the payment.
func (e Event) Settlement() payments.Settlement {
	st := payments.StatusSucceeded
	if e.Type == TypeFailed {
		st = payments.StatusFailed
	}
	return payments.Settlement{
		PaymentID:     e.PaymentID,
		Status:        st,
		AmountMinor:   e.AmountMinor,
		Currency:      e.Currency,
		FailureReason: e.FailureReason,
		OccurredAt:    e.OccurredAt,
	}
}

// ErrMalformedJSON means the body is not a single JSON object.
var ErrMalformedJSON = errors.New("body is not a single JSON object")

var (
	eventFields = []string{"type", "payment_id", "occurred_at", "amount_minor", "currency", "failure_reason", "payer"}
	payerFields = []string{"phone"}
)

// DecodeEvent parses a body strictly: one JSON object, no unknown fields at
// any level, every field checked. It reports every violation at once as a
// *payments.ValidationError, or ErrMalformedJSON for what is not JSON.
func DecodeEvent(body []byte) (Event, error) {
	obj, err := object(body)
	if err != nil {
		return Event{}, err
	}
	var (
		ev Event
		vs []payments.FieldViolation
	)
	add := func(field, reason, desc string) {
		vs = append(vs, payments.FieldViolation{Field: field, Reason: reason, Description: desc})
	}
	unknown(obj, eventFields, "", add)

	switch s, ok := str(obj, "type", add); {
	case !ok:
	case s == TypeSucceeded || s == TypeFailed:
		ev.Type = s
	default:
		add("type", payments.ReasonUnsupported, fmt.Sprintf("must be %q or %q", TypeSucceeded, TypeFailed))
	}

	if s, ok := str(obj, "payment_id", add); ok {
		if _, err := payments.ParseID(s); err != nil {
			add("payment_id", payments.ReasonInvalidFormat, "must be a payment_id as returned by RequestPayment")
		} else {
			ev.PaymentID = s
		}
	}

	if s, ok := str(obj, "occurred_at", add); ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			add("occurred_at", payments.ReasonInvalidFormat, "must be an RFC 3339 timestamp with a UTC offset, such as 2026-11-22T10:00:00Z or 2026-11-22T11:00:00+01:00")
		} else {
			ev.OccurredAt = t
		}
	}

	if raw, ok := obj["amount_minor"]; !ok {
		add("amount_minor", payments.ReasonRequired, "is required: the amount in minor units")
	} else {
		var n int64
		if err := strictNumber(raw, &n); err != nil || n <= 0 || n > payments.MaxAmountMinor {
			add("amount_minor", payments.ReasonOutOfRange, fmt.Sprintf("must be a whole number between 1 and %d", payments.MaxAmountMinor))
		} else {
			ev.AmountMinor = n
		}
	}

	if s, ok := str(obj, "currency", add); ok {
		if _, allowed := payments.MinorUnits(s); !allowed {
			add("currency", payments.ReasonUnsupported, "must be an accepted ISO 4217 code in upper case, such as USD")
		} else {
			ev.Currency = s
		}
	}

	_, hasReason := obj["failure_reason"]
	switch {
	case ev.Type == TypeFailed && !hasReason:
		add("failure_reason", payments.ReasonRequired, "is required for payment.failed")
	case ev.Type == TypeSucceeded && hasReason:
		add("failure_reason", payments.ReasonInvalidFormat, "must be absent for payment.succeeded")
	case hasReason:
		if s, ok := str(obj, "failure_reason", add); ok {
			if s == "" || utf8.RuneCountInString(s) > MaxFailureReasonLen || strings.IndexFunc(s, unicode.IsControl) >= 0 {
				add("failure_reason", payments.ReasonInvalidFormat, fmt.Sprintf("must be 1 to %d characters without control characters", MaxFailureReasonLen))
			} else {
				ev.FailureReason = s
			}
		}
	}

	if raw, ok := obj["payer"]; ok {
		ev.PayerPhone = decodePayer(raw, add)
	}

	if len(vs) > 0 {
		return Event{}, &payments.ValidationError{Violations: vs}
	}
	return ev, nil
}

func decodePayer(raw json.RawMessage, add func(field, reason, desc string)) string {
	payer, err := object(raw)
	if err != nil {
		add("payer", payments.ReasonInvalidFormat, "must be an object")
		return ""
	}
	unknown(payer, payerFields, "payer.", add)
	raw, ok := payer["phone"]
	if !ok {
		return ""
	}
	var phone string
	if err := json.Unmarshal(raw, &phone); err != nil || !e164.MatchString(phone) {
		add("payer.phone", payments.ReasonInvalidFormat, "must be an E.164 number: + then 2 to 15 digits, no leading zero, such as +14155550123")
		return ""
	}
	return phone
}

// object decodes exactly one JSON object and nothing after it.
func object(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, ErrMalformedJSON
	}
	if _, err := dec.Token(); err == nil {
		return nil, ErrMalformedJSON // trailing data
	}
	return obj, nil
}

// unknown reports every field not in allowed, in a stable order.
func unknown(obj map[string]json.RawMessage, allowed []string, prefix string, add func(field, reason, desc string)) {
	var extra []string
	for k := range obj {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		add(prefix+k, "UNKNOWN_FIELD", "is not part of the event contract")
	}
}

// str returns a required string field, reporting a missing or non-string one.
func str(obj map[string]json.RawMessage, field string, add func(field, reason, desc string)) (string, bool) {
	raw, ok := obj[field]
	if !ok {
		add(field, payments.ReasonRequired, "is required")
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		add(field, payments.ReasonInvalidFormat, "must be a string")
		return "", false
	}
	return s, true
}

// strictNumber decodes a JSON integer, refusing strings, fractions and
// exponents that would silently round.
func strictNumber(raw json.RawMessage, n *int64) error {
	s := strings.TrimSpace(string(raw))
	if s == "" || strings.ContainsAny(s, `."eE`) {
		return errors.New("not an integer")
	}
	return json.Unmarshal(raw, n)
}
