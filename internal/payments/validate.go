package payments

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a payment request. They are part of the API contract and are
// documented in ARCHITECTURE.md.
const (
	// MaxAmountMinor stays below 2^53 so the amount survives any JSON or Lua
	// number on its way; it is a trillion minus one minor units.
	MaxAmountMinor        = 999_999_999_999
	MaxOrderIDLen         = 128
	MaxIdempotencyKeyLen  = 255
	MaxMetadataEntries    = 50
	MaxMetadataKeyLen     = 40
	MaxMetadataValueLen   = 500
	maxAmountMinorDisplay = "999999999999"
)

// Machine-readable reasons carried in google.rpc.BadRequest field violations.
const (
	ReasonRequired       = "REQUIRED"
	ReasonOutOfRange     = "OUT_OF_RANGE"
	ReasonInvalidFormat  = "INVALID_FORMAT"
	ReasonUnsupported    = "UNSUPPORTED_VALUE"
	ReasonTooLong        = "TOO_LONG"
	ReasonTooManyEntries = "TOO_MANY_ENTRIES"
)

// FieldViolation names one bad field, why it is bad, and what would be
// accepted instead.
type FieldViolation struct {
	Field       string
	Reason      string
	Description string
}

// ValidationError lists every violation found in a request, not just the
// first, so a client can fix them all in one round.
type ValidationError struct {
	Violations []FieldViolation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Validate checks a RequestPayment request. It returns nil or a
// *ValidationError with one violation per bad field.
func Validate(req Request) error {
	var vs []FieldViolation
	add := func(field, reason, desc string) {
		vs = append(vs, FieldViolation{Field: field, Reason: reason, Description: desc})
	}

	if req.AmountMinor <= 0 || req.AmountMinor > MaxAmountMinor {
		add("amount_minor", ReasonOutOfRange,
			"must be a whole number of minor units between 1 and "+maxAmountMinorDisplay+", got "+strconv.FormatInt(req.AmountMinor, 10))
	}

	switch {
	case req.Currency == "":
		add("currency", ReasonRequired, "is required: an active ISO 4217 code in upper case, such as USD or EUR")
	case !isUpperAlpha3(req.Currency):
		add("currency", ReasonInvalidFormat, fmt.Sprintf("must be exactly three upper-case letters (ISO 4217), such as USD or EUR, got %q", req.Currency))
	default:
		if _, ok := currencies[req.Currency]; !ok {
			add("currency", ReasonUnsupported, fmt.Sprintf("%q is not an accepted currency: use an active ISO 4217 code such as USD or EUR (fund, test and precious-metal codes are refused)", req.Currency))
		}
	}

	switch {
	case req.OrderID == "":
		add("order_id", ReasonRequired, "is required: the merchant's order reference, 1 to "+strconv.Itoa(MaxOrderIDLen)+" characters")
	case !utf8.ValidString(req.OrderID):
		add("order_id", ReasonInvalidFormat, "must be valid UTF-8")
	case utf8.RuneCountInString(req.OrderID) > MaxOrderIDLen:
		add("order_id", ReasonTooLong, "must be at most "+strconv.Itoa(MaxOrderIDLen)+" characters")
	case hasControl(req.OrderID):
		add("order_id", ReasonInvalidFormat, "must not contain control characters")
	}

	switch {
	case req.IdempotencyKey == "":
		add("idempotency_key", ReasonRequired, "is required: 1 to "+strconv.Itoa(MaxIdempotencyKeyLen)+" printable ASCII characters, unique per payment attempt (a UUID works well)")
	case len(req.IdempotencyKey) > MaxIdempotencyKeyLen:
		add("idempotency_key", ReasonTooLong, "must be at most "+strconv.Itoa(MaxIdempotencyKeyLen)+" printable ASCII characters")
	case !isPrintableASCII(req.IdempotencyKey):
		add("idempotency_key", ReasonInvalidFormat, "must contain only printable ASCII characters (space to tilde)")
	}

	validateMetadata(req.Metadata, add)

	if len(vs) == 0 {
		return nil
	}
	return &ValidationError{Violations: vs}
}

func validateMetadata(md map[string]string, add func(field, reason, desc string)) {
	if len(md) > MaxMetadataEntries {
		add("metadata", ReasonTooManyEntries, fmt.Sprintf("must have at most %d entries, got %d", MaxMetadataEntries, len(md)))
		return
	}
	// Violations are reported in key order so the error is deterministic.
	for _, k := range sortedKeys(md) {
		v := md[k]
		field := fmt.Sprintf("metadata[%q]", k)
		switch {
		case k == "":
			add(field, ReasonInvalidFormat, "keys must not be empty")
		case utf8.RuneCountInString(k) > MaxMetadataKeyLen:
			add(field, ReasonTooLong, "keys must be at most "+strconv.Itoa(MaxMetadataKeyLen)+" characters")
		case hasControl(k):
			add(field, ReasonInvalidFormat, "keys must not contain control characters")
		case utf8.RuneCountInString(v) > MaxMetadataValueLen:
			add(field, ReasonTooLong, "values must be at most "+strconv.Itoa(MaxMetadataValueLen)+" characters")
		}
	}
}

func isUpperAlpha3(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
