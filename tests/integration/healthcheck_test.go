//go:build integration

package integration

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthcheck runs the binary's own probe, as the container HEALTHCHECK and
// the helm test Job do, and returns its exit code.
func healthcheck(t *testing.T, addr string) int {
	t.Helper()
	err := exec.Command(binPath, "healthcheck", "-addr", addr, "-timeout", "2s").Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	default:
		t.Fatalf("run healthcheck: %v", err)
		return -1
	}
}

func TestHealthcheckSubcommandOnRealRedis(t *testing.T) {
	r := startRedis(t, redisOpts{})
	s := startServer(t, "PAYMENTS_REDIS_ADDRS="+r.addr())
	waitHealth(t, s.health(), "payments.v1.PaymentService", healthpb.HealthCheckResponse_SERVING, readyTimeout)
	if got := healthcheck(t, s.addr); got != 0 {
		t.Errorf("healthcheck against a serving server exited %d, want 0", got)
	}

	r.stop(syscall.SIGTERM)
	waitHealth(t, s.health(), "payments.v1.PaymentService", healthpb.HealthCheckResponse_NOT_SERVING, readyTimeout)
	if got := healthcheck(t, s.addr); got != 1 {
		t.Errorf("healthcheck while Redis is down exited %d, want 1", got)
	}

	s.Signal(syscall.SIGTERM)
	if err := s.Wait(readyTimeout); err != nil {
		t.Fatalf("server exit after SIGTERM = %v, want status 0", err)
	}
	if got := healthcheck(t, s.addr); got != 1 {
		t.Errorf("healthcheck against a stopped server exited %d, want 1", got)
	}
}
