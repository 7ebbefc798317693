//go:build !linux

package proctest

import "os/exec"

// dieWithParent has no portable equivalent outside Linux; there the test's
// cleanup is the only guard.
func dieWithParent(*exec.Cmd) {}
