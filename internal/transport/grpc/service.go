// Package grpctransport owns the gRPC face of payments-svc: the
// payments.v1.PaymentService handlers, the mapping of domain errors to
// canonical status codes with google.rpc details, and the interceptor chain
// that gives every call a request id, one log line and panic safety.
package grpctransport

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/ratelimit"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// Store is what the handlers need from persistence.
type Store interface {
	Create(ctx context.Context, p payments.Payment, fingerprint string) (payments.Receipt, payments.Outcome, error)
	Replay(ctx context.Context, req payments.Request, fingerprint string) (payments.Receipt, payments.Outcome, error)
	Get(ctx context.Context, merchantID, id string) (payments.Payment, error)
}

// Limiter admits calls against each merchant's quota.
type Limiter interface {
	Allow(ctx context.Context, merchantID string, op ratelimit.Op) (ratelimit.Decision, error)
}

// Readiness reports whether the service can serve, for the spec's Health RPC.
type Readiness interface {
	Ready() bool
}

// ReplayedHeader is set to "true" on a RequestPayment response that replays
// the original result of an earlier call with the same idempotency key.
const ReplayedHeader = "idempotent-replayed"

// Service implements payments.v1.PaymentService.
type Service struct {
	paymentsv1.UnimplementedPaymentServiceServer

	store   Store
	ready   Readiness
	limiter Limiter
	now     func() time.Time
}

// NewService returns the PaymentService handlers. A nil limiter admits every
// call; now is the clock, nil means time.Now.
func NewService(store Store, ready Readiness, limiter Limiter, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, ready: ready, limiter: limiter, now: now}
}

// RequestPayment creates a payment, or replays the original response for a
// repeated idempotency key of the calling merchant.
func (s *Service) RequestPayment(ctx context.Context, in *paymentsv1.RequestPaymentRequest) (*paymentsv1.RequestPaymentResponse, error) {
	merchant, err := merchantOf(ctx)
	if err != nil {
		return nil, err
	}
	req := payments.Request{
		MerchantID:     merchant,
		AmountMinor:    in.GetAmountMinor(),
		Currency:       in.GetCurrency(),
		OrderID:        in.GetOrderId(),
		IdempotencyKey: in.GetIdempotencyKey(),
		Metadata:       in.GetMetadata(),
	}
	if err := payments.Validate(req); err != nil {
		return nil, err
	}
	fingerprint := payments.Fingerprint(req)
	rc, outcome, err := s.create(ctx, req, fingerprint)
	annotate(ctx, outcome, rc.PaymentID)
	if err != nil {
		return nil, err
	}
	if outcome == payments.OutcomeReplayed {
		// A header that cannot be sent means the call is already gone; the
		// response below fails the same way, so there is nothing to add.
		_ = grpc.SetHeader(ctx, metadata.Pairs(ReplayedHeader, "true"))
	}
	return &paymentsv1.RequestPaymentResponse{
		PaymentId:      rc.PaymentID,
		Status:         paymentsv1.PaymentStatus(rc.Status),
		Message:        rc.Message,
		IdempotencyKey: rc.IdempotencyKey,
		CreatedAt:      timestamppb.New(rc.CreatedAt),
	}, nil
}

// create stores the payment within the merchant's creation quota. Over the
// quota, a retry of a payment that exists is still answered from its
// idempotency record, which writes nothing: quota guards creation, and a
// client that lost a response must always be able to get its payment back.
// Only a request that would create is refused, before anything is written,
// so a refusal never burns the key.
func (s *Service) create(ctx context.Context, req payments.Request, fingerprint string) (payments.Receipt, payments.Outcome, error) {
	d, err := s.allow(ctx, req.MerchantID, ratelimit.OpCreate)
	if err != nil {
		return payments.Receipt{}, "", err
	}
	if !d.Allowed {
		rc, outcome, err := s.store.Replay(ctx, req, fingerprint)
		if errors.Is(err, payments.ErrNotFound) {
			return payments.Receipt{}, "", &quotaError{method: "RequestPayment", merchant: req.MerchantID, decision: d}
		}
		return rc, outcome, err
	}
	return s.store.Create(ctx, payments.New(req, s.now().UTC()), fingerprint)
}

func (s *Service) allow(ctx context.Context, merchant string, op ratelimit.Op) (ratelimit.Decision, error) {
	if s.limiter == nil {
		return ratelimit.Decision{Allowed: true}, nil
	}
	return s.limiter.Allow(ctx, merchant, op)
}

// GetPayment returns one of the calling merchant's payments by id. Another
// merchant's payment is NOT_FOUND, exactly like an id that does not exist.
func (s *Service) GetPayment(ctx context.Context, in *paymentsv1.GetPaymentRequest) (*paymentsv1.GetPaymentResponse, error) {
	merchant, err := merchantOf(ctx)
	if err != nil {
		return nil, err
	}
	id := in.GetPaymentId()
	if err := validatePaymentID(id); err != nil {
		return nil, err
	}
	// Logged even when the lookup fails: a NOT_FOUND is easier to chase with the id.
	annotate(ctx, "", id)
	d, err := s.allow(ctx, merchant, ratelimit.OpGet)
	if err != nil {
		return nil, err
	}
	if !d.Allowed {
		return nil, &quotaError{method: "GetPayment", merchant: merchant, decision: d}
	}
	p, err := s.store.Get(ctx, merchant, id)
	if err != nil {
		return nil, err
	}
	return &paymentsv1.GetPaymentResponse{
		PaymentId:      p.ID,
		Status:         paymentsv1.PaymentStatus(p.Status),
		AmountMinor:    p.AmountMinor,
		Currency:       p.Currency,
		OrderId:        p.OrderID,
		IdempotencyKey: p.IdempotencyKey,
		CreatedAt:      timestamppb.New(p.CreatedAt),
		Message:        p.Message,
	}, nil
}

// Health answers "ok" while the service can serve and "unavailable" while its
// store does not answer. Orchestrators should use grpc.health.v1 instead,
// which carries the same state in the standard protocol.
func (s *Service) Health(context.Context, *paymentsv1.HealthRequest) (*paymentsv1.HealthResponse, error) {
	if s.ready != nil && !s.ready.Ready() {
		return &paymentsv1.HealthResponse{Status: "unavailable"}, nil
	}
	return &paymentsv1.HealthResponse{Status: "ok"}, nil
}

func validatePaymentID(id string) error {
	switch _, err := payments.ParseID(id); {
	case id == "":
		return &payments.ValidationError{Violations: []payments.FieldViolation{{
			Field: "payment_id", Reason: payments.ReasonRequired,
			Description: "is required: the payment_id returned by RequestPayment",
		}}}
	case err != nil:
		return &payments.ValidationError{Violations: []payments.FieldViolation{{
			Field: "payment_id", Reason: payments.ReasonInvalidFormat,
			Description: "must be a payment_id as returned by RequestPayment: pay_, 26 ULID characters, _, 8 hex characters",
		}}}
	}
	return nil
}
