// Package controlplane owns a throwaway Kubernetes control plane for tests:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok,
// started from the binaries that ../build.sh pins, all on 127.0.0.1 with
// ports chosen at runtime, certificates from crypto/x509, and one fake node
// that kwok marks Ready and whose pods it marks Running. No container ever
// runs; the controllers reconcile as they would on a real cluster.
package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/internal/proc"
)

// NodeAnnotation marks the nodes kwok manages; only NodeName carries it.
const NodeAnnotation = "kwok.x-k8s.io/node"

// NodeName is the fake node that kwok manages.
const NodeName = "kwok-node-0"

// Options say where the binaries are and where the control plane may write.
type Options struct {
	// BinDir holds the binaries and kwok-stages.yaml written by build.sh.
	BinDir string
	// Dir is an empty working directory for certificates, etcd data and the
	// component logs; the caller removes it after Stop.
	Dir string
	// Timeout bounds each readiness wait; 0 means 2 minutes, which leaves room
	// for a busy 2-core machine paging in ~100 MB binaries.
	Timeout time.Duration
	// RealNode prepares the control plane for a real kubelet (package node)
	// instead of kwok: no kwok and no fake node, the API server gets a client
	// certificate for the kubelet API and verifies the kubelet's serving
	// certificate, and the controller manager provisions hostPath volumes.
	RealNode bool
	// AdvertiseAddress is the API server's address in the kubernetes
	// Service's endpoints; empty means 127.0.0.1, which the API server
	// accepts but cannot publish (Endpoints refuse loopback addresses). The
	// API server still listens on 127.0.0.1 only; package node relays.
	AdvertiseAddress string
}

// ControlPlane is a running control plane. Stop it with Stop.
type ControlPlane struct {
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Server is the API server URL, https://127.0.0.1:<port>.
	Server string

	opts   Options
	pki    *pki
	client *http.Client
	procs  []*proc.Process
}

// Start brings up every component and returns once the API server is ready,
// the controllers and scheduler report healthy, the kwok node is Ready and
// schedulable and the default ServiceAccount exists. On error everything it
// started is already stopped.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.AdvertiseAddress == "" {
		opts.AdvertiseAddress = "127.0.0.1"
	}
	need := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	if !opts.RealNode {
		need = append(need, "kwok", "kwok-stages.yaml")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%w (run `make kube-tools` first)", err)
		}
	}
	cp := &ControlPlane{opts: opts}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	if cp.pki, err = newPKI(opts.Dir); err != nil {
		return nil, err
	}
	ports, err := proc.FreePorts(ctx, 6)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	cp.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	if err := cp.startEtcd(ctx, etcdClient, etcdPeer); err != nil {
		return nil, err
	}
	if err := cp.startAPIServer(ctx, apiPort, etcdClient); err != nil {
		return nil, err
	}
	if err := cp.startControllerManager(ctx, kcmPort); err != nil {
		return nil, err
	}
	if err := cp.startScheduler(ctx, schedPort); err != nil {
		return nil, err
	}
	if opts.RealNode {
		// The node joins later; the default ServiceAccount is the last thing
		// the controllers create that every pod needs.
		if err := cp.procs[len(cp.procs)-1].WaitFor(ctx, cp.opts.Timeout, "seeing the default ServiceAccount", cp.defaultServiceAccount); err != nil {
			return nil, err
		}
		return cp, nil
	}
	if err := cp.startKwok(ctx, kwokPort); err != nil {
		return nil, err
	}
	return cp, nil
}

// Stop stops every component it started, newest first, and is safe to call
// more than once.
func (cp *ControlPlane) Stop() {
	for i := len(cp.procs) - 1; i >= 0; i-- {
		cp.procs[i].Stop(10 * time.Second)
	}
}

// Logs lists the component log files, for a failing test to point at.
func (cp *ControlPlane) Logs() []string {
	var out []string
	for _, p := range cp.procs {
		out = append(out, p.LogFile)
	}
	return out
}

func (cp *ControlPlane) start(name string, args ...string) (*proc.Process, error) {
	p, err := proc.Start(filepath.Join(cp.opts.BinDir, name), cp.opts.Dir, name, args...)
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	client := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	p, err := cp.start("etcd",
		"--name=default",
		"--data-dir="+filepath.Join(cp.opts.Dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer,
		"--unsafe-no-fsync", // throwaway data; fsync is most of etcd's cost on a shared disk
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	return p.WaitFor(ctx, cp.opts.Timeout, "healthy", func(ctx context.Context) error {
		body, err := get(ctx, plainHTTP, client+"/health")
		if err == nil && !strings.Contains(body, `"health":"true"`) {
			err = fmt.Errorf("health: %s", body)
		}
		return err
	})
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, port, etcdPort int) error {
	cert, key, err := cp.pki.serving("apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		// 10.0.0.1 is the first IP of the service range: the in-cluster
		// "kubernetes" Service. It only ever appears in the certificate.
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)})
	if err != nil {
		return err
	}
	adminCert, adminKey, err := cp.pki.client("admin", "admin", "system:masters")
	if err != nil {
		return err
	}
	if cp.Kubeconfig, err = cp.kubeconfig("admin", adminCert, adminKey); err != nil {
		return err
	}
	if cp.client, err = cp.tlsClient(adminCert, adminKey); err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdPort),
		"--bind-address=127.0.0.1", "--advertise-address=" + cp.opts.AdvertiseAddress,
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + cert, "--tls-private-key-file=" + key,
		"--client-ca-file=" + cp.pki.CAFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + cp.pki.SAPubFile,
		"--service-account-signing-key-file=" + cp.pki.SAKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--profiling=false",
	}
	if cp.opts.RealNode {
		// logs, exec and port-forward go from the API server to the kubelet.
		// The kubelet authorises its callers through the API server
		// (SubjectAccessReview); system:masters is allowed everything.
		kcert, kkey, err := cp.pki.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
		if err != nil {
			return err
		}
		args = append(args,
			"--kubelet-client-certificate="+kcert, "--kubelet-client-key="+kkey,
			"--kubelet-certificate-authority="+cp.pki.CAFile,
			// The node's only address is its InternalIP (see package node).
			"--kubelet-preferred-address-types=InternalIP",
		)
	}
	p, err := cp.start("kube-apiserver", args...)
	if err != nil {
		return err
	}
	return p.WaitFor(ctx, cp.opts.Timeout, "ready", func(ctx context.Context) error {
		body, err := get(ctx, cp.client, cp.Server+"/readyz")
		if err == nil && body != "ok" {
			err = fmt.Errorf("readyz: %s", body)
		}
		return err
	})
}

func (cp *ControlPlane) startControllerManager(ctx context.Context, port int) error {
	kubeconfig, err := cp.componentKubeconfig("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	cert, key, err := cp.pki.serving("kube-controller-manager-serving", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + cert, "--tls-private-key-file=" + key,
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + cp.pki.SAKeyFile,
		"--root-ca-file=" + cp.pki.CAFile,
		// No cloud and no pod CIDRs here: leave out what would try to manage them.
		"--controllers=*,-node-ipam-controller,-cloud-node-lifecycle-controller,-node-route-controller,-service-lb-controller",
	}
	if cp.opts.RealNode {
		// A directory under /tmp/hostpath_pv per claim: enough for a
		// single-node cluster, and the only provisioner built in.
		args = append(args, "--enable-hostpath-provisioner=true")
	}
	p, err := cp.start("kube-controller-manager", args...)
	if err != nil {
		return err
	}
	return p.WaitFor(ctx, cp.opts.Timeout, "healthy", cp.httpsOK("https://127.0.0.1:"+strconv.Itoa(port)+"/healthz"))
}

func (cp *ControlPlane) startScheduler(ctx context.Context, port int) error {
	kubeconfig, err := cp.componentKubeconfig("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return err
	}
	cert, key, err := cp.pki.serving("kube-scheduler-serving", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	p, err := cp.start("kube-scheduler",
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--tls-cert-file="+cert, "--tls-private-key-file="+key,
		"--leader-elect=false",
	)
	if err != nil {
		return err
	}
	return p.WaitFor(ctx, cp.opts.Timeout, "ready", cp.httpsOK("https://127.0.0.1:"+strconv.Itoa(port)+"/readyz"))
}

func (cp *ControlPlane) startKwok(ctx context.Context, port int) error {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := cp.start("kwok",
		"--kubeconfig="+cp.Kubeconfig,
		"--config="+filepath.Join(cp.opts.BinDir, "kwok-stages.yaml"),
		"--manage-nodes-with-annotation-selector="+NodeAnnotation+"=fake",
		"--node-lease-duration-seconds=40",
		// Node and pod IPs are data only. The node's is loopback, so even an
		// accidental dial of it (kubectl logs) stays on this machine.
		"--node-ip=127.0.0.1",
		"--cidr=10.244.0.0/16",
		"--server-address="+addr,
	)
	if err != nil {
		return err
	}
	if err := p.WaitFor(ctx, cp.opts.Timeout, "ready", func(ctx context.Context) error {
		body, err := get(ctx, plainHTTP, "http://"+addr+"/readyz")
		if err == nil && body != "ok" {
			err = fmt.Errorf("readyz: %s", body)
		}
		return err
	}); err != nil {
		return err
	}

	node := map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name":        NodeName,
			"annotations": map[string]string{NodeAnnotation: "fake"},
			"labels": map[string]string{
				"kubernetes.io/hostname": NodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
	}
	if err := cp.do(ctx, http.MethodPost, "/api/v1/nodes", node, nil); err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	// Ready, and the node lifecycle controller has lifted its not-ready taint.
	if err := p.WaitFor(ctx, cp.opts.Timeout, "managing a Ready, schedulable node", func(ctx context.Context) error {
		return cp.NodeSchedulable(ctx, NodeName)
	}); err != nil {
		return err
	}
	return p.WaitFor(ctx, cp.opts.Timeout, "seeing the default ServiceAccount", cp.defaultServiceAccount)
}

// NodeSchedulable reports nil once the named Node is Ready and carries no
// NoSchedule or NoExecute taint (the node lifecycle controller lifts them),
// whether kwok or a real kubelet runs it.
func (cp *ControlPlane) NodeSchedulable(ctx context.Context, name string) error {
	var n struct {
		Spec struct {
			Taints []struct{ Key, Effect string }
		}
		Status struct {
			Conditions []struct{ Type, Status, Message string }
		}
	}
	if err := cp.do(ctx, http.MethodGet, "/api/v1/nodes/"+name, nil, &n); err != nil {
		return err
	}
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || c.Type == "Ready" && c.Status == "True"
	}
	if !ready {
		return fmt.Errorf("node %s not Ready: %+v", name, n.Status.Conditions)
	}
	for _, t := range n.Spec.Taints {
		if t.Effect == "NoSchedule" || t.Effect == "NoExecute" {
			return fmt.Errorf("node %s still tainted: %+v", name, n.Spec.Taints)
		}
	}
	return nil
}

// defaultServiceAccount checks the default ServiceAccount exists: without it
// even a dry-run of a Pod is refused.
func (cp *ControlPlane) defaultServiceAccount(ctx context.Context) error {
	return cp.do(ctx, http.MethodGet, "/api/v1/namespaces/default/serviceaccounts/default", nil, nil)
}

// httpsOK checks that url answers 200 over TLS verified against the test CA.
func (cp *ControlPlane) httpsOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := get(ctx, cp.client, url)
		return err
	}
}

// do sends a JSON request to the API server as admin and decodes the answer
// into out when out is not nil.
func (cp *ControlPlane) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, cp.Server+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cp.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// plainHTTP talks to the components that serve plain HTTP on loopback (etcd, kwok).
var plainHTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return string(b), nil
}

func (cp *ControlPlane) tlsClient(certFile, keyFile string) (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cp.pki.ca)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
		},
	}, nil
}

// componentKubeconfig writes a kubeconfig for a control-plane component that
// authenticates as user, as kubeadm sets them up.
func (cp *ControlPlane) componentKubeconfig(name, user string) (string, error) {
	cert, key, err := cp.pki.client(name+"-client", user)
	if err != nil {
		return "", err
	}
	return cp.kubeconfig(name, cert, key)
}

var kubeconfigTmpl = template.Must(template.New("kubeconfig").Parse(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {{.Server}}
    certificate-authority: {{.CA}}
users:
- name: {{.User}}
  user:
    client-certificate: {{.Cert}}
    client-key: {{.Key}}
contexts:
- name: test
  context:
    cluster: test
    user: {{.User}}
current-context: test
`))

func (cp *ControlPlane) kubeconfig(name, certFile, keyFile string) (string, error) {
	var b bytes.Buffer
	if err := kubeconfigTmpl.Execute(&b, map[string]string{
		"Server": cp.Server, "CA": cp.pki.CAFile, "User": name, "Cert": certFile, "Key": keyFile,
	}); err != nil {
		return "", err
	}
	path := filepath.Join(cp.opts.Dir, name+".kubeconfig")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return "", err
	}
	return path, nil
}
