package grpctransport

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/requestid"
	"github.com/payments-svc/payments-svc/internal/telemetry"
)

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "x-request-id"

// callInfo collects what a handler learns during a call, for the log line the
// observer writes when the call ends.
type callInfo struct {
	merchant  string
	outcome   payments.Outcome
	paymentID string
	err       error // the handler's own error, before mapping, for the log
}

type callInfoKey struct{}

// annotate records the idempotency outcome and payment id of the current
// call. It does nothing outside the observer, as in handler unit tests.
func annotate(ctx context.Context, outcome payments.Outcome, paymentID string) {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		if outcome != "" {
			ci.outcome = outcome
		}
		if paymentID != "" {
			ci.paymentID = paymentID
		}
	}
}

// CallObserver is told about every finished call, for metrics. The logger is
// not one: logging is the observer's own job.
type CallObserver interface {
	ObserveCall(ctx context.Context, method string, outcome payments.Outcome)
}

// observe is the outermost interceptor. It assigns the request id and writes
// the one log line of the call, with the status the client got and the error
// behind it. Metadata values are never logged: they are the client's and may
// hold anything.
func observe(log *slog.Logger, obs CallObserver) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		rid := requestID(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, rid))
		ci := &callInfo{}
		ctx = context.WithValue(ctx, callInfoKey{}, ci)

		resp, err := handler(ctx, req)
		st := status.Convert(err)

		// Room for every attribute a line can carry, so it is one allocation.
		attrs := make([]slog.Attr, 0, 10)
		attrs = append(attrs,
			slog.String("method", info.FullMethod),
			slog.String("code", st.Code().String()),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("request_id", rid),
		)
		if p, ok := peer.FromContext(ctx); ok {
			attrs = append(attrs, slog.String("peer", p.Addr.String()))
		}
		if ci.merchant != "" {
			attrs = append(attrs, slog.String("merchant", ci.merchant))
		}
		if ci.paymentID != "" {
			attrs = append(attrs, slog.String("payment_id", ci.paymentID))
		}
		if ci.outcome != "" {
			attrs = append(attrs, slog.String("idempotency", string(ci.outcome)))
		}
		if cause := ci.err; cause != nil {
			attrs = append(attrs, slog.String("error", cause.Error()))
			var pe *recovery.PanicError
			if errors.As(cause, &pe) {
				attrs = append(attrs, slog.String("stack", string(pe.Stack)))
			}
		}
		annotateSpan(ctx, rid, ci)
		log.LogAttrs(ctx, levelFor(info.FullMethod, st.Code()), "rpc", attrs...)
		if obs != nil {
			obs.ObserveCall(ctx, info.FullMethod, ci.outcome)
		}
		return resp, err
	}
}

// annotateSpan copies the request id and what the handler learned onto the
// call's span (otelgrpc's server span), when one is recording.
func annotateSpan(ctx context.Context, rid string, ci *callInfo) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, attribute.String(telemetry.AttrRequestID, rid))
	if ci.merchant != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrMerchantID, ci.merchant))
	}
	if ci.paymentID != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrPaymentID, ci.paymentID))
	}
	if ci.outcome != "" {
		attrs = append(attrs, attribute.String(telemetry.AttrIdempotency, string(ci.outcome)))
	}
	span.SetAttributes(attrs...)
}

// mapErrors turns the handler's error into the status the client sees (the
// one place that happens, see toStatus) and keeps the original for the log
// line. It sits inside the metrics interceptor, so metrics count real codes.
func mapErrors(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err == nil {
		return resp, nil
	}
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		ci.err = err
	}
	return nil, toStatus(err).Err()
}

// levelFor keeps probes quiet and makes server-side failures stand out:
// client mistakes are normal traffic, a store outage is a warning, and a bug
// is an error.
func levelFor(method string, code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.Canceled:
		if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
			return slog.LevelDebug
		}
		return slog.LevelInfo
	case codes.Unauthenticated:
		// Refused credentials are routine; a flood of them shows in the
		// metrics, where it can be alerted on.
		return slog.LevelInfo
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// requestID returns the caller's x-request-id when it is sane, or a new one.
func requestID(ctx context.Context) string {
	var id string
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) > 0 {
		id = v[0]
	}
	return requestid.Resolve(id)
}
