// Package e2e checks Kubernetes manifests, and the payments Helm chart, against
// a real control plane on 127.0.0.1 (see package controlplane): the API server
// validates and stores them and the controllers reconcile them, with kwok
// standing in for the kubelet. TestMain starts one control plane for the whole
// package and always stops it; each test works in its own namespace.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/controlplane"
	"github.com/payments-svc/payments-svc/test/kube/internal/kubetest"
)

var (
	// cp is the control plane shared by every test in the package.
	cp *controlplane.ControlPlane
	// binDir holds kubectl and helm next to the control-plane binaries.
	binDir string
	// workDir is the control plane's temporary directory; helm keeps its
	// config and cache below it too.
	workDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	var err error
	if binDir, err = kubetest.BinDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	removeStaleWorkDirs()
	if workDir, err = os.MkdirTemp("", workDirPrefix); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(workDir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if code != 0 && os.Getenv("KUBE_E2E_KEEP") != "" {
			_ = os.Remove(filepath.Join(workDir, "pid"))
			fmt.Fprintf(os.Stderr, "kept %s (component logs, certificates, kubeconfig)\n", workDir)
			return
		}
		if err := os.RemoveAll(workDir); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	started := time.Now()
	cp, err = controlplane.Start(ctx, controlplane.Options{BinDir: binDir, Dir: workDir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		return 1
	}
	defer cp.Stop()
	fmt.Fprintf(os.Stderr, "control plane ready at %s in %v\n", cp.Server, time.Since(started).Round(100*time.Millisecond))

	code = m.Run()
	if code != 0 {
		for _, l := range cp.Logs() {
			fmt.Fprintf(os.Stderr, "component log: %s\n", l)
		}
		fmt.Fprintln(os.Stderr, "set KUBE_E2E_KEEP=1 to keep them after the run")
	}
	return code
}

const workDirPrefix = "kube-e2e-"

// removeStaleWorkDirs deletes the directories of earlier runs that died
// without cleaning up (a panic or -timeout skips deferred calls; Pdeathsig
// has already killed their components). A directory whose run is still alive,
// or that KUBE_E2E_KEEP kept, has a live or no pid file and stays.
func removeStaleWorkDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), workDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// cmdResult is what a command printed and how it ended.
type cmdResult struct {
	stdout, stderr string
	err            error
}

func (r cmdResult) String() string {
	return fmt.Sprintf("err: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// runTool runs one of the pinned binaries against the control plane, with
// stdin when it is not empty.
func runTool(t *testing.T, stdin string, name string, args ...string) cmdResult {
	t.Helper()
	return runToolContext(t.Context(), stdin, name, args...)
}

func runToolContext(ctx context.Context, stdin string, name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+cp.Kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(workDir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(workDir, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(workDir, "helm", "data"),
	)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return cmdResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// kubectl runs kubectl and fails the test when it fails.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	r := runTool(t, "", "kubectl", args...)
	if r.err != nil {
		t.Fatalf("kubectl %s:\n%v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// helm runs helm and fails the test when it fails.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	r := runTool(t, "", "helm", args...)
	if r.err != nil {
		t.Fatalf("helm %s:\n%v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T, name string) string {
	t.Helper()
	kubectl(t, "create", "namespace", name)
	t.Cleanup(func() {
		// Cleanups run after t.Context is cancelled.
		r := runToolContext(context.Background(), "", "kubectl", "delete", "namespace", name, "--wait=false")
		if r.err != nil {
			t.Errorf("delete namespace %s:\n%v", name, r)
		}
	})
	return name
}
