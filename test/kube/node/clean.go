package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Clean removes everything a node with this work directory created, whether
// it stopped cleanly or its supervisor died: the kubelet, kube-proxy and
// containerd (by the pids it recorded, checked against their command lines),
// containerd's shims (found by this node's socket in their command line),
// every process in the node's pod cgroups, kube-proxy's iptables rules, the
// node's own iptables chain, the mounts below dir (overlays, secrets, network
// namespaces), the cgroups, the bridge, the host sysctls the kubelet changed
// (restored), and dir itself. It is idempotent and
// returns what it could not remove.
func Clean(binDir, dir string) []error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return []error{err}
	}

	for _, name := range []string{"kubelet", "kube-proxy", "containerd"} {
		add(killRecorded(filepath.Join(dir, name+".pid"), dir))
	}
	socket := filepath.Join(dir, "containerd", "containerd.sock")
	add(killShims(socket))
	add(removeShimSockets(dir, socket))
	add(killCgroupProcs(ctx))

	// kube-proxy removes its own KUBE-* chains and jumps; only this node
	// ever runs a kube-proxy on this host.
	if kp := filepath.Join(binDir, "kube-proxy"); fileExists(kp) && iptablesChainExists(ctx, "nat", "KUBE-SERVICES") {
		if err := run(ctx, kp, "--cleanup", "--proxy-mode=iptables"); err != nil {
			add(fmt.Errorf("kube-proxy --cleanup: %w", err))
		}
	}
	// What --cleanup leaves: the kubelet's KUBE-FIREWALL (and its jumps from
	// INPUT and OUTPUT) in both families, which kube-proxy treats as the
	// kubelet's.
	for _, family := range []string{"iptables", "ip6tables"} {
		add(removeKubeChains(ctx, family))
	}
	if iptablesChainExists(ctx, "filter", fwdChain) {
		// A crashed start may have inserted the jump more than once.
		for range 10 {
			if run(ctx, "iptables", "-w", "-D", "FORWARD", "-j", fwdChain, "-m", "comment", "--comment", "payments-node") != nil {
				break
			}
		}
		add(run(ctx, "iptables", "-w", "-F", fwdChain))
		add(run(ctx, "iptables", "-w", "-X", fwdChain))
	}

	add(restoreSysctls(dir))
	add(unmountBelow(dir))
	add(removeCgroups())
	if run(ctx, "ip", "link", "show", Bridge) == nil {
		add(run(ctx, "ip", "link", "del", Bridge))
	}
	add(os.RemoveAll(dir))
	return errs
}

// removeKubeChains deletes every rule that jumps to a KUBE-* chain, then
// every KUBE-* chain, in each table of one iptables family. The KUBE- prefix
// is Kubernetes' own; only this node creates such chains on this host.
func removeKubeChains(ctx context.Context, family string) error {
	out, err := exec.CommandContext(ctx, family+"-save").Output() //nolint:gosec // iptables-save or ip6tables-save
	if err != nil {
		return fmt.Errorf("%s-save: %w", family, err)
	}
	var errs []error
	table := ""
	var chains []string
	flush := func() {
		for _, c := range chains {
			errs = append(errs, run(ctx, family, "-w", "-t", table, "-F", c))
		}
		for _, c := range chains {
			errs = append(errs, run(ctx, family, "-w", "-t", table, "-X", c))
		}
		chains = nil
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":KUBE-"):
			chains = append(chains, strings.Fields(line[1:])[0])
		case strings.HasPrefix(line, "-A ") && !strings.HasPrefix(line, "-A KUBE-") && strings.Contains(line, " -j KUBE-"):
			// iptables-save quotes comments; a rule spec with quotes cannot
			// be split on spaces, and the node writes none into built-in chains.
			if !strings.Contains(line, `"`) {
				errs = append(errs, run(ctx, family, append([]string{"-w", "-t", table, "-D"}, strings.Fields(line)[1:]...)...))
			}
		case line == "COMMIT":
			flush()
		}
	}
	return errors.Join(errs...)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func iptablesChainExists(ctx context.Context, table, chain string) bool {
	return run(ctx, "iptables", "-w", "-t", table, "-n", "-L", chain) == nil
}

// killRecorded kills the process whose pid the file holds, if its command
// line still names dir (so a reused pid is never killed), and waits for it.
func killRecorded(pidFile, dir string) error {
	b, err := os.ReadFile(pidFile) //nolint:gosec // the node's own pid file
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", pidFile, err)
	}
	if strings.Contains(cmdline(pid), dir) {
		return killWait(pid)
	}
	return nil
}

func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// killWait sends SIGTERM, then SIGKILL after a grace period, and waits until
// the pid is gone or a zombie.
func killWait(pid int) error {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(50 * time.Millisecond) // polling a foreign pid: no channel to wait on
	}
	return nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// killShims kills the containerd-shim-runc-v2 processes of this node's
// containerd; they outlive containerd by design.
func killShims(socket string) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		args := strings.Split(cmdline(pid), " ")
		if len(args) > 0 && strings.Contains(args[0], "containerd-shim") && slices.Contains(args, socket) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

// shimSocketRoot is where containerd 1.6's runc v2 shims put their sockets,
// whatever containerd's own state dir: /run/containerd/s/<sha256>.
const shimSocketRoot = "/run/containerd/s"

// removeShimSockets removes the sockets of this node's shims, which a killed
// shim leaves behind. Each is named by the hash of containerd's address, the
// namespace and the task id; the ids are the task directories in the state dir.
func removeShimSockets(dir, socket string) error {
	tasks, err := os.ReadDir(filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", criNamespace))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, t := range tasks {
		sum := sha256.Sum256([]byte(filepath.Join(socket, criNamespace, t.Name())))
		if err := os.Remove(filepath.Join(shimSocketRoot, hex.EncodeToString(sum[:]))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Gone only if empty: another containerd may use them.
	_ = syscall.Rmdir(shimSocketRoot)
	_ = syscall.Rmdir(filepath.Dir(shimSocketRoot))
	return errors.Join(errs...)
}

// podCgroupDirs lists every cgroup directory below cgroupRoot in every
// hierarchy, deepest first.
func podCgroupDirs() ([]string, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range hs {
		root := filepath.Join(h, cgroupRoot)
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs, nil
}

// killCgroupProcs kills every process left in the node's pod cgroups (pod
// containers whose shim is gone) and waits until they are empty.
func killCgroupProcs(ctx context.Context) error {
	for {
		dirs, err := podCgroupDirs()
		if err != nil {
			return err
		}
		left := 0
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")) //nolint:gosec // a cgroupfs file
			if err != nil {
				continue
			}
			for f := range strings.FieldsSeq(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && alive(pid) {
					left++
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d processes still in the pod cgroups: %w", left, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func removeCgroups() error {
	dirs, err := podCgroupDirs()
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// unmountBelow detaches every mount point at or below dir, deepest first.
func unmountBelow(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMount(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.Sort(points)
	points = slices.Compact(points)
	slices.SortStableFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
