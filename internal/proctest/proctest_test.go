package proctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary act as the child process: it logs two JSON
// lines, then exits 0 on SIGTERM, or 3 right away when asked to fail.
const childEnv = "PROCTEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "serve":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Println(`not json`)
		fmt.Println(`{"msg":"listening","addr":"127.0.0.1:1"}`)
		fmt.Fprintln(os.Stderr, "a line on stderr")
		<-sigs
		fmt.Println(`{"msg":"stopped"}`)
		os.Exit(0)
	case "fail":
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestStartWaitSignal(t *testing.T) {
	p := Start(t, os.Args[0], append(os.Environ(), childEnv+"=serve"))
	if got := p.WaitLog("listening", 10*time.Second)["addr"]; got != "127.0.0.1:1" {
		t.Errorf("WaitLog() addr = %v, want 127.0.0.1:1", got)
	}
	if !p.Logged("127.0.0.1") || p.Logged("absent") {
		t.Errorf("Logged() does not reflect the lines read")
	}
	if p.Exited() {
		t.Fatal("Exited() = true for a running process")
	}
	p.Signal(syscall.SIGTERM)
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("Wait() = %s, want exit status 0", ExitStatus(err))
	}
	if !p.Exited() || !strings.Contains(p.LogTail(1), "stopped") || !strings.Contains(p.Stderr(), "stderr") {
		t.Errorf("after exit: Exited %v, tail %q, stderr %q", p.Exited(), p.LogTail(1), p.Stderr())
	}
}

func TestExitStatus(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=fail")
	failed := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(failed, &ee) || ExitStatus(failed) != "exit status 3" {
		t.Errorf("ExitStatus(%v) = %q, want exit status 3", failed, ExitStatus(failed))
	}
	if got := ExitStatus(nil); got != "exit status 0" {
		t.Errorf("ExitStatus(nil) = %q", got)
	}
	if got := ExitStatus(errors.New("x")); got != "x" {
		t.Errorf("ExitStatus(other) = %q, want x", got)
	}
}

func TestPrepareNamesTheMissingTool(t *testing.T) {
	_, _, err := Prepare("apt-get install nothing", "go", "payments-no-such-tool")
	if err == nil || !strings.Contains(err.Error(), "payments-no-such-tool") || !strings.Contains(err.Error(), "apt-get install nothing") {
		t.Errorf("Prepare() error = %v, want one naming the missing tool and how to install it", err)
	}
}
