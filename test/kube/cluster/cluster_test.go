package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/internal/kubetest"

	"github.com/payments-svc/payments-svc/test/kube/cluster"
)

// The test needs root, a running Docker engine, `make kube-tools` and
// `make cluster-images`; `make cluster-e2e` provides all of it and sets this.
const enableEnv = "KUBE_CLUSTER_E2E"

// probeImage is built by TestMain from ../images/probe.
const probeImage = "payments-local/kube-e2e-probe:dev"

var (
	c      *cluster.Cluster
	binDir string
)

func TestMain(m *testing.M) {
	if os.Getenv(enableEnv) == "" {
		fmt.Fprintf(os.Stderr, "skipping the real-node cluster test: set %s=1 (make cluster-e2e)\n", enableEnv)
		os.Exit(m.Run()) // each test skips itself, so the run says so
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if binDir, err = kubetest.BinDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := buildProbeImage(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer removeProbeImage()
	// Short: containerd's socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "kc-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	started := time.Now()
	c, err = cluster.Start(ctx, cluster.Options{BinDir: binDir, Dir: dir, Images: []string{probeImage}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster: %v\n", err)
		return 1
	}
	defer c.Stop()
	fmt.Fprintf(os.Stderr, "cluster ready in %v\n", time.Since(started).Round(100*time.Millisecond))
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "component logs (removed after the run):\n  %s\n", strings.Join(c.Logs(), "\n  "))
	}
	return code
}

// buildProbeImage builds the static probe binary and a FROM-scratch image of it.
func buildProbeImage(ctx context.Context) error {
	tmp, err := os.MkdirTemp("", "probe-image-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(tmp, "probe"), "../images/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build probe: %w: %s", err, out)
	}
	df, err := os.ReadFile("../images/probe/Dockerfile")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "Dockerfile"), df, 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", probeImage, tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("docker build %s: %w: %s", probeImage, err, out)
	}
	return nil
}

func removeProbeImage() {
	if out, err := exec.Command("docker", "rmi", probeImage).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "docker rmi %s: %v: %s\n", probeImage, err, out)
	}
}

func skipUnlessEnabled(t *testing.T) {
	t.Helper()
	if c == nil {
		t.Skipf("set %s=1 to run against a real node (make cluster-e2e)", enableEnv)
	}
}

// kubectl runs kubectl as admin and returns stdout, failing the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectlErr(t.Context(), "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func kubectlErr(ctx context.Context, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if _, err := kubectlErr(t.Context(), manifest, "-n", ns, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, manifest)
	}
}

func newNamespace(t *testing.T, name string) string {
	t.Helper()
	kubectl(t, "create", "namespace", name)
	t.Cleanup(func() {
		// Wait, so the pods and volumes are gone before the cluster stops.
		if _, err := kubectlErr(context.Background(), "", "delete", "namespace", name, "--timeout=2m"); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
      containers:
      - name: web
        image: ` + probeImage + `
        imagePullPolicy: Never
        args: [serve, ":8080"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
  - name: client
    image: ` + probeImage + `
    imagePullPolicy: Never
    # A server nobody calls keeps the pod running for kubectl exec.
    args: [serve, ":9090"]
`

// TestPodsServicesDNS: a pod from a locally built image becomes Ready through
// its HTTP readiness probe (run by the kubelet over the pod network); another
// pod resolves the Service through CoreDNS and reaches it through kube-proxy;
// kubectl exec, logs and port-forward go through the API server to the kubelet.
func TestPodsServicesDNS(t *testing.T) {
	skipUnlessEnabled(t)
	ns := newNamespace(t, "web")
	apply(t, ns, webManifest)
	kubectl(t, "-n", ns, "wait", "--for=condition=Available", "deployment/web", "--timeout=2m")
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/client", "--timeout=2m")
	webPod := strings.TrimSpace(kubectl(t, "-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"))
	webIP := strings.TrimSpace(kubectl(t, "-n", ns, "get", "pod", webPod, "-o", "jsonpath={.status.podIP}"))
	if !strings.HasPrefix(webIP, "10.244.0.") {
		t.Fatalf("web pod IP %q is not on the node's pod network 10.244.0.0/24", webIP)
	}
	svcIP := strings.TrimSpace(kubectl(t, "-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))

	t.Run("dns", func(t *testing.T) {
		// The short name goes through the pod's search path to CoreDNS.
		kubetest.Eventually(t, time.Minute, "web resolves to its Service IP", func() error {
			out, err := kubectlErr(t.Context(), "", "-n", ns, "exec", "client", "--", "/probe", "lookup", "web")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != svcIP {
				return fmt.Errorf("lookup web = %q, want %s", out, svcIP)
			}
			return nil
		})
		out := kubectl(t, "-n", ns, "exec", "client", "--", "/probe", "lookup", "kubernetes.default.svc.cluster.local")
		if strings.TrimSpace(out) != "10.0.0.1" {
			t.Errorf("lookup kubernetes.default = %q, want 10.0.0.1", out)
		}
	})

	t.Run("service", func(t *testing.T) {
		kubetest.Eventually(t, time.Minute, "client reaches web through the Service", func() error {
			out, err := kubectlErr(t.Context(), "", "-n", ns, "exec", "client", "--", "/probe", "get", "http://web."+ns+".svc.cluster.local/")
			if err != nil {
				return err
			}
			if out != webPod {
				return fmt.Errorf("web answered %q, want its hostname %s", out, webPod)
			}
			return nil
		})
	})

	t.Run("port-forward", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "kubectl"), "--kubeconfig", c.Kubeconfig,
			"-n", ns, "port-forward", "--address=127.0.0.1", "pod/"+webPod, ":8080")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		// "Forwarding from 127.0.0.1:41234 -> 8080"
		re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 8080`)
		sc := bufio.NewScanner(stdout)
		var addr string
		for addr == "" && sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr = m[1]
			}
		}
		if addr == "" {
			t.Fatalf("port-forward printed no local address: %v; stderr: %s", sc.Err(), stderr.String())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET through port-forward: %v; stderr: %s", err, stderr.String())
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != webPod {
			t.Fatalf("GET through port-forward: %s %q, want 200 %q", resp.Status, body, webPod)
		}
	})

	t.Run("logs", func(t *testing.T) {
		// The probe server logs nothing; a successful empty read still
		// proves the API server reaches the kubelet's log endpoint.
		if _, err := kubectlErr(t.Context(), "", "-n", ns, "logs", webPod); err != nil {
			t.Fatalf("kubectl logs: %v", err)
		}
	})
}

const volumeManifest = `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
  # As the chart's bundled Redis runs: uid 999, fsGroup 1000.
  securityContext: {runAsNonRoot: true, runAsUser: 999, runAsGroup: 1000, fsGroup: 1000}
  containers:
  - name: writer
    image: ` + probeImage + `
    imagePullPolicy: Never
    args: [serve, ":9090"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
`

// TestDynamicVolume: a claim on the default StorageClass is provisioned and
// bound, and a non-root pod writes to it; the data survives the pod.
func TestDynamicVolume(t *testing.T) {
	skipUnlessEnabled(t)
	ns := newNamespace(t, "volume")
	apply(t, ns, volumeManifest)
	kubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=2m")
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/writer", "--timeout=2m")
	out := kubectl(t, "-n", ns, "exec", "writer", "--", "/probe", "write", "/data/greeting", "hello from uid 999")
	if out != "hello from uid 999" {
		t.Fatalf("read back %q", out)
	}

	// A new pod on the same claim sees what the first one wrote.
	kubectl(t, "-n", ns, "delete", "pod", "writer", "--wait=true", "--timeout=2m")
	apply(t, ns, volumeManifest)
	kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/writer", "--timeout=2m")
	if out := kubectl(t, "-n", ns, "exec", "writer", "--", "/probe", "read", "/data/greeting"); out != "hello from uid 999" {
		t.Fatalf("the second pod read %q", out)
	}
}
