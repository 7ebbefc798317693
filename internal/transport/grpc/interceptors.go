package grpctransport

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "x-request-id"

const maxRequestIDLen = 128

// callInfo collects what a handler learns during a call, for the log line the
// observer writes when the call ends.
type callInfo struct {
	outcome   payments.Outcome
	paymentID string
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

// observe is the outermost interceptor. It assigns the request id, maps the
// handler's error to a status (the one place that happens), and writes the
// one log line of the call. Metadata values are never logged: they are the
// client's and may hold anything.
func observe(log *slog.Logger, obs CallObserver) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		rid := requestID(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, rid))
		ci := &callInfo{}
		ctx = context.WithValue(ctx, callInfoKey{}, ci)

		resp, err := handler(ctx, req)
		st := toStatus(err)

		attrs := []slog.Attr{
			slog.String("method", info.FullMethod),
			slog.String("code", st.Code().String()),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("request_id", rid),
		}
		if p, ok := peer.FromContext(ctx); ok {
			attrs = append(attrs, slog.String("peer", p.Addr.String()))
		}
		if ci.paymentID != "" {
			attrs = append(attrs, slog.String("payment_id", ci.paymentID))
		}
		if ci.outcome != "" {
			attrs = append(attrs, slog.String("idempotency", string(ci.outcome)))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
			var pe *recovery.PanicError
			if errors.As(err, &pe) {
				attrs = append(attrs, slog.String("stack", string(pe.Stack)))
			}
		}
		log.LogAttrs(ctx, levelFor(info.FullMethod, st.Code()), "rpc", attrs...)
		if obs != nil {
			obs.ObserveCall(ctx, info.FullMethod, ci.outcome)
		}
		if err != nil {
			return nil, st.Err()
		}
		return resp, nil
	}
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
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// requestID returns the caller's x-request-id when it is sane, or a new one.
func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) > 0 && validRequestID(v[0]) {
			return v[0]
		}
	}
	return rand.Text()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
