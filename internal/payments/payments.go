// Package payments owns the payment domain of payments-svc: the types, the
// validation rules, the request fingerprint, the payment_id format and the
// human messages. It does no I/O; storage and transport build on it.
package payments

import (
	"errors"
	"time"
)

// Status is the lifecycle state of a payment. The values match the
// payments.v1.PaymentStatus enum so the transport can convert by number.
type Status int32

// The lifecycle: every payment starts Pending; a provider event settles it as
// Succeeded or Failed, and a settled payment never changes again.
const (
	StatusUnspecified Status = 0
	StatusPending     Status = 1
	StatusSucceeded   Status = 2
	StatusFailed      Status = 3
)

var statusNames = map[Status]string{
	StatusUnspecified: "UNSPECIFIED",
	StatusPending:     "PENDING",
	StatusSucceeded:   "SUCCEEDED",
	StatusFailed:      "FAILED",
}

func (s Status) String() string {
	if name, ok := statusNames[s]; ok {
		return name
	}
	return "UNKNOWN"
}

// Settled reports whether the status is final.
func (s Status) Settled() bool { return s == StatusSucceeded || s == StatusFailed }

// Request is a validated-or-not request to create a payment, as the client
// sent it.
type Request struct {
	// MerchantID is the authenticated caller, never a field the client
	// sends: it scopes the idempotency key.
	MerchantID     string
	AmountMinor    int64
	Currency       string
	OrderID        string
	IdempotencyKey string
	Metadata       map[string]string
}

// Payment is the stored record of one payment.
type Payment struct {
	ID             string
	MerchantID     string
	Status         Status
	AmountMinor    int64
	Currency       string
	OrderID        string
	IdempotencyKey string
	Message        string
	CreatedAt      time.Time
	Metadata       map[string]string
}

// Receipt is the response to the request that created a payment. It is stored
// beside the idempotency key and returned unchanged on every replay, even after
// the payment itself has moved on.
func (p Payment) Receipt() Receipt {
	return Receipt{
		PaymentID:      p.ID,
		Status:         p.Status,
		Message:        p.Message,
		IdempotencyKey: p.IdempotencyKey,
		CreatedAt:      p.CreatedAt,
	}
}

// Receipt is the original creation response of a payment.
type Receipt struct {
	PaymentID      string
	Status         Status
	Message        string
	IdempotencyKey string
	CreatedAt      time.Time
}

// Outcome says how a RequestPayment call was resolved against its
// idempotency key. It is logged and counted, never sent to clients.
type Outcome string

// The three idempotency outcomes.
const (
	OutcomeCreated  Outcome = "created"
	OutcomeReplayed Outcome = "replayed"
	OutcomeMismatch Outcome = "mismatch"
)

// The domain's error vocabulary. Storage wraps its failures with these and the
// transport maps them to status codes; nobody else needs to know about Redis.
var (
	// ErrNotFound: no payment has the requested id.
	ErrNotFound = errors.New("payment not found")
	// ErrIdempotencyKeyReused: the key was first used with a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")
	// ErrUnavailable: the store could not be reached or did not answer in
	// time. The operation may or may not have been applied; retrying with the
	// same idempotency key is always safe.
	ErrUnavailable = errors.New("payment store unavailable")
)

// New builds the record for a fresh payment from a request that has passed
// Validate. The caller supplies the clock so tests can pin it.
func New(req Request, now time.Time) Payment {
	return Payment{
		ID:             NewID(req.MerchantID, req.IdempotencyKey, now),
		MerchantID:     req.MerchantID,
		Status:         StatusPending,
		AmountMinor:    req.AmountMinor,
		Currency:       req.Currency,
		OrderID:        req.OrderID,
		IdempotencyKey: req.IdempotencyKey,
		Message:        PendingMessage(req.AmountMinor, req.Currency, req.OrderID),
		CreatedAt:      now,
		Metadata:       req.Metadata,
	}
}

// Settlement is a provider's final word on a payment.
type Settlement struct {
	PaymentID     string
	Status        Status // StatusSucceeded or StatusFailed
	AmountMinor   int64
	Currency      string
	FailureReason string
	OccurredAt    time.Time
}

// Message is the human message of a payment in status st. It is derived, never
// stored: the same fields always give the same words, so storing them would
// only cost memory and Redis CPU (BENCHMARKS.md, "CPU per call").
func Message(st Status, amountMinor int64, currency, orderID, failureReason string) string {
	switch st {
	case StatusSucceeded:
		return "payment of " + FormatAmount(amountMinor, currency) + " for order " + orderID + " succeeded"
	case StatusFailed:
		return "payment of " + FormatAmount(amountMinor, currency) + " for order " + orderID + " failed: " + failureReason
	default:
		return PendingMessage(amountMinor, currency, orderID)
	}
}

// SettleOutcome says how a provider event was resolved.
type SettleOutcome string

// The outcomes of applying a provider event.
const (
	SettleApplied        SettleOutcome = "applied"
	SettleDuplicate      SettleOutcome = "duplicate"
	SettleAlreadySettled SettleOutcome = "already_settled"
)

// Settlement failures. Each leaves the payment untouched.
var (
	// ErrEventConflict: the event id was seen before with a different body.
	ErrEventConflict = errors.New("event id already used with a different body")
	// ErrSettlementConflict: the payment is already settled the other way.
	ErrSettlementConflict = errors.New("payment already settled with the opposite outcome")
	// ErrAmountMismatch: the event's amount or currency is not the payment's.
	ErrAmountMismatch = errors.New("event amount or currency does not match the payment")
)
