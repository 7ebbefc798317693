// Package cluster brings up a one-node Kubernetes cluster whose pods really
// run: the control plane of package controlplane, the real node of package
// node, CoreDNS as a pod behind the kube-dns Service, and a default
// StorageClass served by the controller manager's hostPath provisioner.
// Everything is built or imported locally; nothing is pulled.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/controlplane"
	"github.com/payments-svc/payments-svc/test/kube/node"
)

// Image names the harness builds (test/kube/images/build.sh). They live under
// payments-local/, never under an upstream name.
const (
	DefaultPauseImage   = "payments-local/pause:1.0"
	DefaultCoreDNSImage = "payments-local/coredns:1.14.7"
)

// Options say where the binaries are and where the cluster may write.
type Options struct {
	// BinDir holds the binaries build.sh writes.
	BinDir string
	// Dir is the cluster's working directory; it must not exist or be empty.
	// Keep the path short (containerd's socket lives below it).
	Dir string
	// PauseImage and CoreDNSImage default to the images above.
	PauseImage, CoreDNSImage string
	// Images are further Docker images imported into the node at start.
	Images []string
	// Timeout bounds each readiness wait; 0 means 3 minutes.
	Timeout time.Duration
}

// Cluster is a running cluster. Stop it with Stop.
type Cluster struct {
	// Kubeconfig is an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Socket is the node containerd's address, for ImportImage.
	Socket string

	opts Options
	cp   *controlplane.ControlPlane
	node *node.Node
	pvs  *pvWatcher
}

// Start brings the cluster up and returns once the node is Ready, CoreDNS
// answers its readiness probe and the default StorageClass exists. On error,
// everything it started is already stopped and removed.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.PauseImage == "" {
		opts.PauseImage = DefaultPauseImage
	}
	if opts.CoreDNSImage == "" {
		opts.CoreDNSImage = DefaultCoreDNSImage
	}
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Minute
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	cpDir := filepath.Join(opts.Dir, "cp")
	if err := os.MkdirAll(cpDir, 0o750); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts}
	defer func() { //nolint:contextcheck // cleanup must run even when ctx is cancelled
		if err != nil {
			c.Stop()
		}
	}()
	if c.cp, err = controlplane.Start(ctx, controlplane.Options{
		BinDir: opts.BinDir, Dir: cpDir, Timeout: opts.Timeout,
		RealNode: true, AdvertiseAddress: node.GatewayIP,
	}); err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	c.Kubeconfig = c.cp.Kubeconfig
	c.pvs = watchHostPathPVs(ctx, c.cp, filepath.Join(opts.Dir, "hostpath-pvs"))
	if c.node, err = node.Start(ctx, node.Options{
		BinDir: opts.BinDir, Dir: filepath.Join(opts.Dir, "node"), LogDir: filepath.Join(opts.Dir, "node-logs"),
		ControlPlane: c.cp,
		PauseImage:   opts.PauseImage, Images: append([]string{opts.CoreDNSImage}, opts.Images...),
		Timeout: opts.Timeout,
	}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	c.Socket = c.node.Socket
	if err := c.kubectlApply(ctx, addons(opts.CoreDNSImage)); err != nil {
		return nil, err
	}
	if err := c.waitCoreDNS(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Logs lists every component's log file.
func (c *Cluster) Logs() []string {
	var out []string
	if c.cp != nil {
		out = append(out, c.cp.Logs()...)
	}
	if c.node != nil {
		out = append(out, c.node.Logs()...)
	}
	return out
}

// Stop stops the node (removing every pod), then the control plane, and
// removes the hostPath volumes it provisioned. Safe to call more than once.
func (c *Cluster) Stop() {
	if c.node != nil {
		c.node.Stop()
	}
	if c.pvs != nil {
		c.pvs.stop()
	}
	if c.cp != nil {
		c.cp.Stop()
	}
	for _, err := range removeHostPathPVs(filepath.Join(c.opts.Dir, "hostpath-pvs")) {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
	}
}

// Clean removes what a cluster with this directory left behind when its
// supervisor died: the node (see node.Clean), its hostPath volumes, and the
// directory. The control plane's processes die with the supervisor
// (Pdeathsig); their files are in the directory.
func Clean(binDir, dir string) []error {
	errs := node.Clean(binDir, filepath.Join(dir, "node"))
	errs = append(errs, removeHostPathPVs(filepath.Join(dir, "hostpath-pvs"))...)
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// ImportImage copies a Docker image into the node's containerd.
func (c *Cluster) ImportImage(ctx context.Context, image string) error {
	return node.ImportImage(ctx, c.Socket, image)
}

func (c *Cluster) kubectlApply(ctx context.Context, manifest string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.BinDir, "kubectl"), "--kubeconfig", c.Kubeconfig, "apply", "-f", "-") //nolint:gosec // the pinned kubectl from build.sh
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply: %w: %s", err, out)
	}
	return nil
}

// waitCoreDNS polls until the CoreDNS Deployment has a ready replica and the
// kube-dns Service has a ready endpoint.
func (c *Cluster) waitCoreDNS(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var last error
	for {
		var dep struct {
			Status struct {
				ReadyReplicas int `json:"readyReplicas"`
			}
		}
		last = c.cp.Do(ctx, http.MethodGet, "/apis/apps/v1/namespaces/kube-system/deployments/coredns", nil, &dep)
		if last == nil && dep.Status.ReadyReplicas < 1 {
			last = errors.New("coredns has no ready replica")
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("coredns not ready within %v: %w (node logs: %s)", c.opts.Timeout, last, strings.Join(c.node.Logs(), ", "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
