package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// kubeletSysctls are the host-wide settings the kubelet's container manager
// sets at start (pkg/kubelet/cm setupKernelTunables with
// protectKernelDefaults false; true would refuse to start on this host's
// values instead). The node records their values first and Clean puts them back.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

const savedSysctls = "sysctls.saved"

// saveSysctls records the current values, unless a record exists already
// (then it holds the values from before an earlier, uncleaned start).
func saveSysctls(dir string) error {
	path := filepath.Join(dir, savedSysctls)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var b strings.Builder
	for _, s := range kubeletSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", s)) //nolint:gosec // a fixed list of /proc/sys names
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s=%s\n", s, strings.TrimSpace(string(v)))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// restoreSysctls writes the recorded values back.
func restoreSysctls(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, savedSysctls)) //nolint:gosec // the node's own record
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", filepath.Clean("/"+name)), []byte(value), 0o600); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
