// Command kube-cluster runs the one-node cluster of package cluster in the
// background for `make cluster-up`, `make cluster-load` and `make
// cluster-down`:
//
//	kube-cluster up   -bin DIR -state DIR [-image IMG]...  start a supervisor, wait, print the kubeconfig path
//	kube-cluster run  -bin DIR -state DIR [-image IMG]...  the supervisor itself (foreground)
//	kube-cluster load -state DIR IMG...                     docker save IMG | ctr import into the node
//	kube-cluster down -bin DIR -state DIR                   stop the supervisor, then sweep what is left
//
// The supervisor keeps every component as its child; its pid is in
// <state>/supervisor.pid and its log in <state>/supervisor.log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/cluster"
)

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-cluster up|run|load|down [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	bin := fs.String("bin", ".cache/kube/bin", "directory of the binaries build.sh writes")
	state := fs.String("state", ".cache/cluster", "the cluster's state directory")
	var images stringList
	fs.Var(&images, "image", "a Docker image to import into the node at start (repeatable)")
	_ = fs.Parse(os.Args[2:])
	var err error
	if *bin, err = filepath.Abs(*bin); err == nil {
		*state, err = filepath.Abs(*state)
	}
	if err == nil {
		switch os.Args[1] {
		case "up":
			err = up(*bin, *state, images)
		case "run":
			err = run(*bin, *state, images)
		case "load":
			err = load(*state, fs.Args())
		case "down":
			err = down(*bin, *state)
		default:
			err = fmt.Errorf("unknown command %q", os.Args[1])
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-cluster %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// Files in the state directory.
const (
	pidFile    = "supervisor.pid"
	logFile    = "supervisor.log"
	readyFile  = "ready"      // holds the kubeconfig path once the cluster is up
	socketFile = "containerd" // holds the node containerd's socket path
)

// supervisorPid returns the supervisor's pid if one runs for this state dir.
func supervisorPid(state string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(state, pidFile)) //nolint:gosec // below the state dir the caller chose
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	// A reused pid belongs to another program.
	if err != nil || !strings.Contains(string(cmdline), "kube-cluster") || !strings.Contains(string(cmdline), state) {
		return 0, false
	}
	return pid, true
}

func up(bin, state string, images []string) error {
	if _, ok := supervisorPid(state); ok {
		kubeconfig, err := os.ReadFile(filepath.Join(state, readyFile)) //nolint:gosec // below the state dir the caller chose
		if err != nil {
			return fmt.Errorf("a supervisor runs for %s but is not ready yet; see %s", state, filepath.Join(state, logFile))
		}
		fmt.Fprintln(os.Stderr, "kube-cluster: already running")
		fmt.Println(strings.TrimSpace(string(kubeconfig)))
		return nil
	}
	if _, err := os.Stat(state); err == nil { //nolint:gosec // below the state dir the caller chose
		// A supervisor died without cleaning up: sweep before starting anew.
		fmt.Fprintf(os.Stderr, "kube-cluster: cleaning up after a previous cluster in %s\n", state)
		if err := down(bin, state); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(state, 0o750); err != nil { //nolint:gosec // below the state dir the caller chose
		return err
	}
	log, err := os.Create(filepath.Join(state, logFile)) //nolint:gosec // below the state dir the caller chose
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"run", "-bin", bin, "-state", state}
	for _, img := range images {
		args = append(args, "-image", img)
	}
	// The supervisor outlives this command (and make): its own session, no
	// terminal, output to its log.
	cmd := exec.Command(self, args...) //nolint:gosec,noctx // this very binary; it must outlive any context here
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(os.Stderr, "kube-cluster: supervisor pid %d, log %s\n", cmd.Process.Pid, filepath.Join(state, logFile))
	started := time.Now()
	deadline := time.After(10 * time.Minute)
	for {
		if b, err := os.ReadFile(filepath.Join(state, readyFile)); err == nil { //nolint:gosec // below the state dir the caller chose
			fmt.Fprintf(os.Stderr, "kube-cluster: ready in %v\n", time.Since(started).Round(time.Second))
			fmt.Println(strings.TrimSpace(string(b)))
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("supervisor exited (%w); its log %s:\n%s", err, filepath.Join(state, logFile), tail(filepath.Join(state, logFile), 40))
		case <-deadline:
			return fmt.Errorf("cluster not ready within 10m; see %s", filepath.Join(state, logFile))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path) //nolint:gosec // below the state dir the caller chose
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func run(bin, state string, images []string) error {
	if err := os.MkdirAll(state, 0o750); err != nil { //nolint:gosec // below the state dir the caller chose
		return err
	}
	if err := os.WriteFile(filepath.Join(state, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil { //nolint:gosec // below the state dir the caller chose
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	started := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{BinDir: bin, Dir: filepath.Join(state, "c"), Images: images})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(os.Stderr, "kube-cluster: stopping")
		c.Stop()
		_ = os.Remove(filepath.Join(state, readyFile)) //nolint:gosec // below the state dir the caller chose
		_ = os.Remove(filepath.Join(state, pidFile))   //nolint:gosec // below the state dir the caller chose
		fmt.Fprintln(os.Stderr, "kube-cluster: stopped")
	}()
	kubeconfig := filepath.Join(state, "kubeconfig")
	b, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, b, 0o600); err != nil { //nolint:gosec // below the state dir the caller chose
		return err
	}
	if err := os.WriteFile(filepath.Join(state, socketFile), []byte(c.Socket), 0o600); err != nil { //nolint:gosec // below the state dir the caller chose
		return err
	}
	if err := os.WriteFile(filepath.Join(state, readyFile), []byte(kubeconfig), 0o600); err != nil { //nolint:gosec // below the state dir the caller chose
		return err
	}
	fmt.Fprintf(os.Stderr, "kube-cluster: ready in %v; kubeconfig %s; logs:\n  %s\n",
		time.Since(started).Round(time.Second), kubeconfig, strings.Join(c.Logs(), "\n  "))
	<-ctx.Done()
	return nil
}

func load(state string, images []string) error {
	if len(images) == 0 {
		return errors.New("no image given")
	}
	if _, ok := supervisorPid(state); !ok {
		return fmt.Errorf("no cluster runs for %s (make cluster-up)", state)
	}
	socket, err := os.ReadFile(filepath.Join(state, socketFile)) //nolint:gosec // below the state dir the caller chose
	if err != nil {
		return fmt.Errorf("cluster not ready: %w", err)
	}
	ctx := context.Background()
	c := &cluster.Cluster{Socket: string(socket)}
	for _, img := range images {
		started := time.Now()
		if err := c.ImportImage(ctx, img); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "kube-cluster: loaded %s in %v\n", img, time.Since(started).Round(100*time.Millisecond))
	}
	return nil
}

func down(bin, state string) error {
	if pid, ok := supervisorPid(state); ok {
		fmt.Fprintf(os.Stderr, "kube-cluster: stopping supervisor %d\n", pid)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if _, ok := supervisorPid(state); !ok {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "kube-cluster: supervisor %d did not stop in 3m; killing it\n", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(100 * time.Millisecond) // a foreign pid: nothing to wait on but /proc
		}
	}
	// Sweep whatever a crash left (idempotent when the supervisor stopped cleanly).
	errs := cluster.Clean(bin, filepath.Join(state, "c"))
	if err := os.RemoveAll(state); err != nil { //nolint:gosec // below the state dir the caller chose
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintf(os.Stderr, "kube-cluster: down; %s removed\n", state)
	return nil
}
