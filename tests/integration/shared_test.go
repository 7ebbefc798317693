//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// Helpers shared by the suites that run what was built elsewhere: the
// container image (tag container) and the chart on a cluster (tag cluster).

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// uniqueName is a name no other run uses, so a test only ever touches its own objects.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func grpcClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// repoRoot is the module root, where the Makefile and compose file are.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// dockerCmd runs the docker CLI (or another command) and returns its trimmed
// output; the error carries the output too.
func dockerCmd(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(out), 30))
	}
	return strings.TrimSpace(string(out)), nil
}

// createReplayGet creates a payment for key, replays it and reads it back,
// checking the replay header and that all three agree. It returns the payment.
func createReplayGet(t *testing.T, c paymentsv1.PaymentServiceClient, key string) *paymentsv1.RequestPaymentResponse {
	t.Helper()
	created, replayed, err := call(c, key, 10*time.Second)
	if err != nil || replayed {
		t.Fatalf("create %s: replayed=%v err=%v, want a new payment", key, replayed, err)
	}
	checkReplay(t, c, key, created)
	return created
}

// checkReplay asserts that a retry of key replays the original and that
// GetPayment returns it.
func checkReplay(t *testing.T, c paymentsv1.PaymentServiceClient, key string, original *paymentsv1.RequestPaymentResponse) {
	t.Helper()
	again, replayed, err := call(c, key, 10*time.Second)
	if err != nil || !replayed {
		t.Fatalf("replay %s: replayed=%v err=%v, want idempotent-replayed: true", key, replayed, err)
	}
	if diff := cmp.Diff(original, again, protocmp.Transform()); diff != "" {
		t.Errorf("replay of %s differs from the original (-original +replay):\n%s", key, diff)
	}
	got, err := getPayment(c, original.GetPaymentId())
	if err != nil {
		t.Fatalf("GetPayment(%s): %v", original.GetPaymentId(), err)
	}
	if diff := cmp.Diff(wantGet(original), got, protocmp.Transform()); diff != "" {
		t.Errorf("GetPayment(%s) (-want +got):\n%s", original.GetPaymentId(), diff)
	}
}

// syncBuffer collects a child process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
