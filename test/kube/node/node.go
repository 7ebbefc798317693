// Package node joins one real node to a control plane from package
// controlplane: a containerd of its own (CRI enabled, its own root, state and
// socket under the work directory), a kubelet and a kube-proxy in iptables
// mode, and a bridge CNI network for the pods. Everything lives in the host
// network namespace, but on addresses the node creates: the bridge (Bridge,
// GatewayIP) and the pod network behind it. Stop, and Clean after a crash,
// remove every process, mount, network namespace, cgroup, iptables chain and
// the bridge by name or id.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/controlplane"
	"github.com/payments-svc/payments-svc/test/kube/internal/proc"
)

// The node's fixed network. The ranges are private, and nothing outside this
// machine is ever routed to them: the bridge lives in the host namespace, but
// only pods on it and the host's own processes use these addresses.
const (
	// Name is the Node object's name.
	Name = "payments-node"
	// Bridge is the Linux bridge the pods attach to.
	Bridge = "kpay0"
	// PodCIDR is the pods' subnet on Bridge.
	PodCIDR = "10.244.0.0/24"
	// GatewayIP is the bridge's address: the pods' gateway, the node's
	// InternalIP (the kubelet refuses a loopback node IP) and the API
	// server's advertised address (an Endpoints address may not be loopback;
	// see apiProxy).
	GatewayIP = "10.244.0.1"
	// ClusterDNS is the Service IP the kubelet puts in pods' resolv.conf;
	// the CoreDNS Service must claim it (it lies inside the API server's
	// --service-cluster-ip-range, 10.0.0.0/24).
	ClusterDNS = "10.0.0.10"
	// ClusterDomain is the DNS suffix of Services.
	ClusterDomain = "cluster.local"
	// cgroupRoot holds every pod cgroup, in each cgroup v1 hierarchy, under a
	// name of this node's own so cleanup can find them.
	cgroupRoot = "payments-node"
	// fwdChain accepts pod-to-pod traffic on Bridge: Docker sets the FORWARD
	// policy to DROP, and bridged packets traverse it (br_netfilter).
	fwdChain = "KPAY-FORWARD"
)

// Options say where the binaries are and where the node may write.
type Options struct {
	// BinDir holds kubelet and kube-proxy (build.sh).
	BinDir string
	// Dir is the node's working directory: containerd's root, state and
	// socket, the kubelet's root, CNI configuration and IPAM state, logs.
	// Keep it short: containerd's socket path must fit in 108 bytes.
	Dir string
	// ControlPlane is the running control plane to join; it must have been
	// started with RealNode and AdvertiseAddress GatewayIP.
	ControlPlane *controlplane.ControlPlane
	// PauseImage is the sandbox image, already present in Docker; it is
	// imported into the node's containerd before the kubelet starts.
	PauseImage string
	// Images are further Docker images to import before the kubelet starts.
	Images []string
	// LogDir receives the component logs; empty means <Dir>/logs. Clean
	// removes Dir, so a caller that wants the logs after a failed start
	// puts them elsewhere.
	LogDir string
	// Timeout bounds each readiness wait; 0 means 2 minutes.
	Timeout time.Duration
}

// Node is a running node. Stop it with Stop.
type Node struct {
	// Socket is the node containerd's address (for ctr -a).
	Socket string

	opts       Options
	containerd *proc.Process
	kubelet    *proc.Process
	kubeProxy  *proc.Process
	apiProxy   *apiProxy
}

// Start prepares the network, starts containerd, imports the images, and
// starts the kubelet and kube-proxy; it returns once the Node is Ready and
// schedulable and kube-proxy is healthy. On error, everything it created is
// already removed.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("node: needs root (bridge, iptables, mounts, cgroups)")
	}
	if opts.ControlPlane == nil || opts.PauseImage == "" {
		return nil, errors.New("node: ControlPlane and PauseImage are required")
	}
	for _, b := range []string{filepath.Join(opts.BinDir, "kubelet"), filepath.Join(opts.BinDir, "kube-proxy")} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%w (run `make kube-tools` first)", err)
		}
	}
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "docker", "iptables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("node needs %s: %w", tool, err)
		}
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "bridge")); err != nil {
		return nil, fmt.Errorf("node needs the CNI plugins (apt-get install containernetworking-plugins): %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if opts.LogDir == "" {
		opts.LogDir = filepath.Join(dir, "logs")
	}
	n := &Node{opts: opts, Socket: filepath.Join(dir, "containerd", "containerd.sock")}
	defer func() { //nolint:contextcheck // cleanup must run even when ctx is cancelled
		if err != nil {
			n.Stop()
		}
	}()
	if err := setupNetwork(ctx, dir); err != nil {
		return nil, err
	}
	if n.apiProxy, err = startAPIProxy(ctx, opts.ControlPlane.Server); err != nil {
		return nil, fmt.Errorf("api server relay on %s: %w", GatewayIP, err)
	}
	if err := setupCgroups(); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	images := append([]string{opts.PauseImage}, opts.Images...)
	for _, img := range images {
		if err := ImportImage(ctx, n.Socket, img); err != nil {
			return nil, err
		}
	}
	ports, err := proc.FreePorts(ctx, 4)
	if err != nil {
		return nil, err
	}
	if err := n.startKubelet(ctx, ports[0], ports[1]); err != nil {
		return nil, err
	}
	if err := n.startKubeProxy(ctx, ports[2], ports[3]); err != nil {
		return nil, err
	}
	return n, nil
}

// Logs lists the node's component log files.
func (n *Node) Logs() []string {
	var out []string
	for _, p := range []*proc.Process{n.containerd, n.kubelet, n.kubeProxy} {
		if p != nil {
			out = append(out, p.LogFile)
		}
	}
	return out
}

// Stop stops the kubelet first so it restarts nothing, removes every pod
// sandbox through the CRI (which tears down each pod's network through CNI),
// stops kube-proxy and containerd, then sweeps with Clean. It is safe to call
// more than once.
func (n *Node) Stop() {
	if n.kubelet != nil {
		n.kubelet.Stop(20 * time.Second)
	}
	if n.containerd != nil && !n.containerd.Exited() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := removeSandboxes(ctx, n.Socket); err != nil {
			fmt.Fprintf(os.Stderr, "node: remove pod sandboxes: %v\n", err)
		}
		cancel()
	}
	if n.kubeProxy != nil {
		n.kubeProxy.Stop(10 * time.Second)
	}
	if n.containerd != nil {
		n.containerd.Stop(20 * time.Second)
	}
	if n.apiProxy != nil {
		n.apiProxy.stop()
	}
	for _, err := range Clean(n.opts.BinDir, n.opts.Dir) {
		fmt.Fprintf(os.Stderr, "node: clean: %v\n", err)
	}
}

func (n *Node) start(name, bin string, args ...string) (*proc.Process, error) {
	if err := os.MkdirAll(n.opts.LogDir, 0o750); err != nil {
		return nil, err
	}
	p, err := proc.Start(bin, n.opts.LogDir, name, args...)
	if err != nil {
		return nil, err
	}
	// Clean reads these to kill what a crashed supervisor left behind.
	if err := os.WriteFile(filepath.Join(n.opts.Dir, name+".pid"), []byte(strconv.Itoa(p.Pid())), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// waitNodeReady polls until the Node is Ready and has no NoSchedule or
// NoExecute taint left (the node lifecycle controller lifts them).
func (n *Node) waitNodeReady(ctx context.Context) error {
	cp := n.opts.ControlPlane
	return n.kubelet.WaitFor(ctx, n.opts.Timeout, "registering a Ready, schedulable node", func(ctx context.Context) error {
		return cp.NodeSchedulable(ctx, Name)
	})
}

// gatewayIP parses GatewayIP once for certificates.
func gatewayIP() net.IP { return net.ParseIP(GatewayIP) }
