package grpctransport

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of this API's errors.
const ErrorDomain = "payments.v1"

// ReasonIdempotencyKeyReused is the google.rpc.ErrorInfo reason for a key
// first used with a different request.
const ReasonIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"

// retryDelay is the RetryInfo hint sent with UNAVAILABLE.
const retryDelay = time.Second

// toStatus maps an error returned by a handler to the status the client sees.
// It is the one place where domain and storage errors become status codes;
// see the error model in ARCHITECTURE.md. Messages never carry internals.
func toStatus(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	var verr *payments.ValidationError
	var qerr *quotaError
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		// Which part was wrong stays in the server log: telling the caller
		// would help someone guessing keys.
		return status.New(codes.Unauthenticated, "missing or invalid credentials: send authorization: Bearer <api key>, or a client certificate")
	case errors.As(err, &qerr):
		return withDetails(codes.ResourceExhausted,
			"rate limit exceeded for "+qerr.method+"; retry after the delay in RetryInfo with the same idempotency key",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(qerr.decision.RetryAfter)},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
				Subject:     "merchant:" + qerr.merchant,
				Description: qerr.method + " is limited to " + qerr.decision.Limit.String(),
			}}})
	case errors.As(err, &verr):
		br := &errdetails.BadRequest{}
		for _, v := range verr.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: v.Field, Reason: v.Reason, Description: v.Description,
			})
		}
		return withDetails(codes.InvalidArgument, verr.Error(), br)
	case errors.Is(err, payments.ErrIdempotencyKeyReused):
		return withDetails(codes.FailedPrecondition,
			"idempotency key was already used with a different request; send the original request to get its result, or use a new key for a new payment",
			&errdetails.ErrorInfo{Reason: ReasonIdempotencyKeyReused, Domain: ErrorDomain})
	case errors.Is(err, payments.ErrNotFound):
		return status.New(codes.NotFound, "payment not found")
	case errors.Is(err, payments.ErrMalformedID):
		return withDetails(codes.InvalidArgument, "malformed payment_id",
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
				Field: "payment_id", Reason: payments.ReasonInvalidFormat, Description: "is not a payment_id",
			}}})
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded before the payment store answered; retry with the same idempotency key")
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "call canceled by the client")
	case errors.Is(err, payments.ErrUnavailable):
		return withDetails(codes.Unavailable,
			"payment store unavailable; retry with the same idempotency key",
			&errdetails.RetryInfo{RetryDelay: durationpb.New(retryDelay)})
	default:
		return status.New(codes.Internal, "internal error")
	}
}

func withDetails(code codes.Code, msg string, details ...protoadapt.MessageV1) *status.Status {
	st := status.New(code, msg)
	if withD, err := st.WithDetails(details...); err == nil {
		return withD
	}
	return st
}
