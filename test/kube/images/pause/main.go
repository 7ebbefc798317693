// Command pause is the sandbox ("infra") container of every pod on the
// harness's real node. It holds the pod's namespaces open: it does nothing but
// wait for SIGINT or SIGTERM, and, being PID 1 when the pod shares its process
// namespace, reaps orphaned children so they never linger as zombies.
//
// It is written here rather than taken from upstream because no image
// registry answers on the machines this project runs on.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking; one SIGCHLD may stand
// for several exits.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
