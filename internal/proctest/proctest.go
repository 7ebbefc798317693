// Package proctest owns running the payments-svc binary as a child process in
// tests, the way a container or a kubelet runs it: building it once, starting
// it, reading its JSON log lines, waiting for one of them instead of
// sleeping, signalling it, and always killing it when the test ends.
package proctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build compiles cmd/server into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "payments-svc")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/payments-svc/payments-svc/cmd/server")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build server binary: %w", err)
	}
	return bin, nil
}

// Prepare is the common start of a TestMain that runs the binary: it checks
// that every tool is on PATH (the error says how to install them, per hint),
// and builds the server into a fresh temporary directory, which remove
// deletes.
func Prepare(hint string, tools ...string) (bin string, remove func(), err error) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", nil, fmt.Errorf("these tests need %s on PATH (%s): %w", tool, hint, err)
		}
	}
	dir, err := os.MkdirTemp("", "payments-bin-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { _ = os.RemoveAll(dir) }
	if bin, err = Build(dir); err != nil {
		remove()
		return "", nil, err
	}
	return bin, remove, nil
}

// Proc is a running child process whose stdout carries JSON log lines.
type Proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stderr syncBuffer

	mu    sync.Mutex
	lines []map[string]any
	added chan struct{} // closed and replaced whenever a line arrives
	done  chan struct{}
	err   error // exit status, valid once done is closed
}

// Start runs bin with exactly env as its environment. The process is killed
// when the test ends; if the test failed, its stderr and last log lines are
// logged first.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	dieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, cmd: cmd, added: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go p.read(out)
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op when the test already stopped it
		<-p.done
		if t.Failed() {
			t.Logf("process %s stderr:\n%s\nlast log lines:\n%s", bin, p.stderr.String(), p.LogTail(20))
		}
	})
	return p
}

func (p *Proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		p.mu.Lock()
		p.lines = append(p.lines, m)
		close(p.added)
		p.added = make(chan struct{})
		p.mu.Unlock()
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

// WaitLog returns the first log line whose msg is msg, waiting for it to be
// written. It fails the test if the process exits or timeout passes first.
func (p *Proc) WaitLog(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["msg"] == msg {
				p.mu.Unlock()
				return l
			}
		}
		added := p.added
		p.mu.Unlock()
		select {
		case <-added:
		case <-p.done:
			p.t.Fatalf("process exited (%v) before logging %q; stderr:\n%s", p.err, msg, p.stderr.String())
		case <-deadline:
			p.t.Fatalf("no %q log line within %s", msg, timeout)
		}
	}
}

// Logged reports whether any log line has a string field containing substr.
func (p *Proc) Logged(substr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		for _, v := range l {
			if s, ok := v.(string); ok && strings.Contains(s, substr) {
				return true
			}
		}
	}
	return false
}

// LogTail returns the last n log lines, one JSON object a line.
func (p *Proc) LogTail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Signal sends sig to the process, failing the test if it cannot.
func (p *Proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal process: %v", err)
	}
}

// Wait returns the exit error (nil for status 0), failing the test if the
// process is still running after timeout.
func (p *Proc) Wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("process still running after %s", timeout)
		return nil
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitStatus describes a process's exit error for test messages.
func ExitStatus(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		return ee.String()
	default:
		return err.Error()
	}
}

// syncBuffer is a bytes.Buffer safe for a process and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
