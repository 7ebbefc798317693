package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criNamespace is the containerd namespace the CRI plugin keeps pods and
// their images in.
const criNamespace = "k8s.io"

// cniBinDir is where Debian's containernetworking-plugins installs the plugins.
const cniBinDir = "/usr/lib/cni"

// containerdConfig is a whole containerd 1.6 configuration, so no default
// path on the host (/var/lib/containerd, /run/containerd, /opt/containerd,
// /etc/cni/net.d, /opt/cni/bin) is ever used.
var containerdConfig = template.Must(template.New("containerd").Parse(`version = 2
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"
# 0 leaves containerd's own oom_score_adj alone: lowering it needs
# CAP_SYS_RESOURCE, which this machine's root lacks.
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{{.Dir}}/containerd.sock"

[ttrpc]
  address = "{{.Dir}}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  # The sandbox asks for oom_score_adj -998 and Guaranteed pods' containers
  # for -997; without CAP_SYS_RESOURCE runc cannot lower the score and the
  # sandbox dies with "can't get final child's PID from pipe: EOF". This
  # clamps every requested score to containerd's own (0), which root may set.
  restrict_oom_score_adj = true
  # No AppArmor in this kernel; no SELinux.
  disable_apparmor = true
  # Keep network namespaces under the state dir, not /var/run/netns, so
  # cleanup finds only this node's.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 through cgroupfs, as the kubelet's cgroupDriver says.
        SystemdCgroup = false
        # runc's state, by default /run/containerd/runc.
        Root = "{{.Dir}}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBin}}"
    conf_dir = "{{.CNIConf}}"
    max_conf_num = 1
`))

func (n *Node) startContainerd(ctx context.Context) error {
	dir := filepath.Join(n.opts.Dir, "containerd")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	config := filepath.Join(dir, "config.toml")
	f, err := os.Create(config) //nolint:gosec // the node's own work directory
	if err != nil {
		return err
	}
	err = containerdConfig.Execute(f, map[string]string{
		"Dir":        dir,
		"PauseImage": n.opts.PauseImage,
		"CNIBin":     cniBinDir,
		"CNIConf":    filepath.Join(n.opts.Dir, "cni", "net.d"),
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return err
	}
	if n.containerd, err = n.start("containerd", bin, "--config", config); err != nil {
		return err
	}
	// Ready once the CRI answers and reports its runtime (not yet its
	// network: the kubelet's pods need the CNI config, which is written).
	return n.containerd.WaitFor(ctx, n.opts.Timeout, "serving the CRI", func(ctx context.Context) error {
		return withCRI(ctx, n.Socket, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
			st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
			if err != nil {
				return err
			}
			for _, c := range st.GetStatus().GetConditions() {
				if c.GetType() == runtimeapi.RuntimeReady && !c.GetStatus() {
					return fmt.Errorf("runtime not ready: %s", c.GetMessage())
				}
			}
			return nil
		})
	})
}

// withCRI calls f with a CRI runtime client on the containerd at socket.
func withCRI(ctx context.Context, socket string, f func(context.Context, runtimeapi.RuntimeServiceClient) error) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	return f(ctx, runtimeapi.NewRuntimeServiceClient(conn))
}

// removeSandboxes stops and removes every pod sandbox (and so its containers
// and its network, through CNI DEL) on the containerd at socket.
func removeSandboxes(ctx context.Context, socket string) error {
	return withCRI(ctx, socket, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
		list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return err
		}
		var errs []error
		for _, sb := range list.GetItems() {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
				errs = append(errs, fmt.Errorf("stop sandbox %s: %w", sb.GetMetadata().GetName(), err))
				continue
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
				errs = append(errs, fmt.Errorf("remove sandbox %s: %w", sb.GetMetadata().GetName(), err))
			}
		}
		return errors.Join(errs...)
	})
}

// ImportImage copies a Docker image into the CRI namespace of the containerd
// at socket (docker save | ctr images import), so pods can use it with
// imagePullPolicy IfNotPresent or Never; nothing is ever pulled.
func ImportImage(ctx context.Context, socket, image string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	save := exec.CommandContext(ctx, "docker", "save", image)                                //nolint:gosec // docker save of the image the caller names
	imp := exec.CommandContext(ctx, "ctr", "--address", socket, "--namespace", criNamespace, //nolint:gosec // ctr against this node's socket
		"images", "import", "-")
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	imp.Stdin = pipe
	var saveErr, impOut strings.Builder
	save.Stderr = &saveErr
	imp.Stdout, imp.Stderr = &impOut, &impOut
	if err := save.Start(); err != nil {
		return fmt.Errorf("docker save %s: %w", image, err)
	}
	if err := imp.Start(); err != nil {
		_ = save.Process.Kill()
		_ = save.Wait()
		return fmt.Errorf("ctr import %s: %w", image, err)
	}
	impErr := imp.Wait()
	if impErr != nil {
		// Unblock docker save if ctr stopped reading.
		_, _ = io.Copy(io.Discard, pipe)
	}
	if err := save.Wait(); err != nil {
		return fmt.Errorf("docker save %s: %w: %s", image, err, strings.TrimSpace(saveErr.String()))
	}
	if impErr != nil {
		return fmt.Errorf("ctr import %s: %w: %s", image, impErr, strings.TrimSpace(impOut.String()))
	}
	return nil
}
