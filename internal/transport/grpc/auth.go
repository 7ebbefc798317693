package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/ratelimit"
)

// Authenticator turns what a caller presented into a merchant id.
type Authenticator interface {
	Authenticate(c auth.Credentials) (string, error)
}

// paymentServicePrefix selects the methods that need a caller identity. The
// spec's Health RPC, grpc.health.v1 and reflection stay open: probes and
// `grpcurl list` carry no credentials.
const paymentServicePrefix = "/payments.v1.PaymentService/"

var openMethods = map[string]bool{paymentServicePrefix + "Health": true}

type merchantKey struct{}

// authenticate establishes the merchant of every PaymentService call before
// its handler runs; a refused call reaches nothing behind it. It sits inside
// mapErrors, so the log line keeps the reason while the client only learns
// that its credentials were refused.
func authenticate(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, paymentServicePrefix) || openMethods[info.FullMethod] {
			return handler(ctx, req)
		}
		if a == nil {
			return nil, fmt.Errorf("%w: no authenticator configured", auth.ErrUnauthenticated)
		}
		m, err := a.Authenticate(credentialsOf(ctx))
		if err != nil {
			return nil, err
		}
		if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
			ci.merchant = m
		}
		return handler(context.WithValue(ctx, merchantKey{}, m), req)
	}
}

func credentialsOf(ctx context.Context) auth.Credentials {
	var c auth.Credentials
	// ValueFromIncomingContext reads the one key; FromIncomingContext
	// would copy every header of the call first.
	c.Authorization = metadata.ValueFromIncomingContext(ctx, "authorization")
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			c.VerifiedChains = ti.State.VerifiedChains
		}
	}
	return c
}

// merchantOf returns the merchant authenticate established. A handler
// reached without one is a wiring bug, refused rather than served unscoped.
func merchantOf(ctx context.Context) (string, error) {
	if m, ok := ctx.Value(merchantKey{}).(string); ok && m != "" {
		return m, nil
	}
	return "", errors.New("no merchant on the call: authenticate did not run")
}

// quotaError is a call refused for the merchant's rate limit.
type quotaError struct {
	method   string
	merchant string
	decision ratelimit.Decision
}

func (e *quotaError) Error() string {
	return fmt.Sprintf("rate limit of %s for merchant %s (%s) exceeded", e.method, e.merchant, e.decision.Limit)
}
