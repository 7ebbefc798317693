package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// setupNetwork creates the bridge with the gateway address, accepts
// pod-to-pod traffic on the bridge, and writes the CNI configuration
// containerd reads.
func setupNetwork(ctx context.Context, dir string) error {
	if err := run(ctx, "ip", "link", "show", Bridge); err == nil {
		return fmt.Errorf("bridge %s already exists: another node runs, or an earlier one was not cleaned up (make cluster-down)", Bridge)
	}
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", GatewayIP + "/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"-w", "-N", fwdChain},
		{"-w", "-A", fwdChain, "-i", Bridge, "-o", Bridge, "-j", "ACCEPT", "-m", "comment", "--comment", "payments-node pod to pod"},
		{"-w", "-I", "FORWARD", "1", "-j", fwdChain, "-m", "comment", "--comment", "payments-node"},
	} {
		if err := run(ctx, "iptables", args...); err != nil {
			return err
		}
	}

	conflist := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "payments-node",
		"plugins": []any{
			map[string]any{
				"type":      "bridge",
				"bridge":    Bridge,
				"isGateway": true,
				// Pods reach nothing off this machine, so nothing to masquerade.
				"ipMasq": false,
				// A pod can reach itself through its own Service.
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": filepath.Join(dir, "cni", "ipam"),
					"ranges": [][]map[string]string{{{
						"subnet": PodCIDR, "gateway": GatewayIP, "rangeStart": "10.244.0.10",
					}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
		},
	}
	b, err := json.MarshalIndent(conflist, "", "  ")
	if err != nil {
		return err
	}
	confDir := filepath.Join(dir, "cni", "net.d")
	if err := os.MkdirAll(confDir, 0o750); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(confDir, "10-payments-node.conflist"), b, 0o600)
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies (cpu, memory, ...).
func cgroupHierarchies() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup" {
			out = append(out, f[1])
		}
	}
	return out, nil
}

// setupCgroups creates the kubelet's cgroupRoot in every hierarchy: the
// kubelet requires it to exist.
func setupCgroups() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		return fmt.Errorf("no cgroup v1 hierarchy mounted; this node setup expects cgroup v1")
	}
	for _, h := range hs {
		if err := os.MkdirAll(filepath.Join(h, cgroupRoot), 0o755); err != nil { //nolint:gosec // cgroupfs directories
			return err
		}
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // ip, iptables and kube-proxy with arguments built here
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
