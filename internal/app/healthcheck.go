package app

import (
	"context"
	"crypto/tls"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/telemetry"
)

// Healthcheck asks a running server over grpc.health.v1 whether service is
// SERVING. It backs the `healthcheck` subcommand used by the container
// HEALTHCHECK and the Helm test, where the image has no shell or grpcurl.
// A nil tlsCfg dials in plaintext. The call is traced with the global tracer
// provider, which the subcommand leaves a no-op on purpose: probes every few
// seconds would bury the payments in a trace backend.
func Healthcheck(ctx context.Context, addr, service string, tlsCfg *tls.Config) error {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithPropagators(telemetry.Propagator()))))
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", addr, err)
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck %s: service %q is %s", addr, service, st)
	}
	return nil
}
