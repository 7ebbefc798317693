// Package proc starts and stops the harness's long-lived components (the
// control plane's and the node's), each with its own log file, and polls them
// for readiness while failing fast when one exits.
package proc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Process is one started component: its log file, and a channel closed once
// it has exited, so readiness polls can fail fast on a crash.
type Process struct {
	Name    string
	LogFile string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // set before done is closed
}

// Start runs bin with args in dir, logging to <dir>/<name>.log.
func Start(bin, dir, name string, args ...string) (*Process, error) {
	logFile := filepath.Join(dir, name+".log")
	f, err := os.Create(logFile) //nolint:gosec // the caller's own work directory
	if err != nil {
		return nil, err
	}
	// The pinned binaries from build.sh; a component lives until Stop, not until a context ends.
	cmd := exec.Command(bin, args...) //nolint:gosec,noctx // see above
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies without running its cleanup (a panic, a
	// -timeout), the kernel still kills the component.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, LogFile: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the process to terminate and kills it if it has not within grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Tail returns the last n lines of the process log, for error messages.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls check until it returns nil, the process exits, or timeout passes.
func (p *Process) WaitFor(ctx context.Context, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited (%w) before %s; log %s:\n%s", p.Name, p.err, what, p.LogFile, p.Tail(30))
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not %s within %v: %w; log %s:\n%s", p.Name, what, timeout, last, p.LogFile, p.Tail(30))
		case <-tick.C:
		}
	}
}

// FreePorts reserves n distinct loopback ports. They are released before the
// components bind them, so another process could take one in between; the
// component then fails to start and the error says so.
func FreePorts(ctx context.Context, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
