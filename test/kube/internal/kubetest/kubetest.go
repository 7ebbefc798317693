// Package kubetest holds what the control-plane and real-node suites share
// when waiting on a cluster: a bounded poll that fails the test, never a sleep.
package kubetest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Eventually polls check every 250ms until it returns nil, and fails the test
// with check's last error once timeout has passed or the test is cancelled.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, errors.Join(err, t.Context().Err()))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// BinDir is where build.sh put the binaries: $KUBE_BIN, or the repository's
// .cache/kube/bin seen from a test package two levels below test/kube.
func BinDir() (string, error) {
	dir := os.Getenv("KUBE_BIN")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", ".cache", "kube", "bin")
	}
	return filepath.Abs(dir)
}
