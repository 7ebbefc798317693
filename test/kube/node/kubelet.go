package node

import (
	"context"
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
)

var kubeletConfig = template.Must(template.New("kubelet").Parse(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The API server reaches the kubelet (logs, exec, port-forward) at the node's
# InternalIP, the bridge address; nothing else can.
address: {{.NodeIP}}
port: {{.Port}}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {{.HealthzPort}}
tlsCertFile: {{.Cert}}
tlsPrivateKeyFile: {{.Key}}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {{.CA}}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://{{.Socket}}
# This host has cgroup v1 (cgroupfs), which kubelet 1.34 refuses by default.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{{.CgroupRoot}}
# Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this root lacks; 0 is
# the score it already has.
oomScoreAdj: 0
failSwapOn: false
clusterDNS: [{{.ClusterDNS}}]
clusterDomain: {{.ClusterDomain}}
# Pods with dnsPolicy Default get this (empty) file, never the host's
# nameservers: nothing in the cluster may resolve or dial off this machine.
resolvConf: {{.ResolvConf}}
podLogsDirectory: {{.PodLogs}}
volumePluginDir: {{.VolumePlugins}}
# The images are imported, never pulled: garbage collection must not delete
# them when the disk fills, so image GC is off (100%).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
# The kubelet's own iptables chains would outlive it; kube-proxy does the work.
makeIPTablesUtilChains: false
serializeImagePulls: false
registerNode: true
`))

var kubeProxyConfig = template.Must(template.New("kube-proxy").Parse(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{.Kubeconfig}}
hostnameOverride: {{.Name}}
bindAddress: {{.NodeIP}}
healthzBindAddress: 127.0.0.1:{{.HealthzPort}}
metricsBindAddress: 127.0.0.1:{{.MetricsPort}}
mode: iptables
clusterCIDR: {{.PodCIDR}}
detectLocalMode: ClusterCIDR
# NodePorts only on the bridge address, never on the host's interfaces.
nodePortAddresses: ["{{.NodeIP}}/32"]
# See the kubelet: 0 needs no CAP_SYS_RESOURCE.
oomScoreAdj: 0
iptables:
  # True would set net.ipv4.conf.all.route_localnet on the whole host.
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
# Leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`))

func writeTemplate(path string, t *template.Template, data any) error {
	f, err := os.Create(path) //nolint:gosec // the node's own work directory
	if err != nil {
		return err
	}
	err = t.Execute(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context, port, healthzPort int) error {
	cp := n.opts.ControlPlane
	dir := filepath.Join(n.opts.Dir, "kubelet")
	for _, d := range []string{dir, filepath.Join(n.opts.LogDir, "pods"), filepath.Join(n.opts.Dir, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	clientCert, clientKey, err := cp.IssueClient("kubelet-client", "system:node:"+Name, "system:nodes")
	if err != nil {
		return err
	}
	kubeconfig, err := cp.WriteKubeconfig("kubelet", clientCert, clientKey)
	if err != nil {
		return err
	}
	cert, key, err := cp.IssueServing("kubelet-serving", []string{Name, "localhost"}, []net.IP{gatewayIP()})
	if err != nil {
		return err
	}
	resolv := filepath.Join(n.opts.Dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# no upstream nameservers: see package node\n"), 0o600); err != nil {
		return err
	}
	if err := saveSysctls(n.opts.Dir); err != nil {
		return err
	}
	config := filepath.Join(n.opts.Dir, "kubelet.yaml")
	if err := writeTemplate(config, kubeletConfig, map[string]any{
		"NodeIP": GatewayIP, "Port": port, "HealthzPort": healthzPort,
		"Cert": cert, "Key": key, "CA": cp.CAFile(), "Socket": n.Socket,
		"CgroupRoot": cgroupRoot, "ClusterDNS": ClusterDNS, "ClusterDomain": ClusterDomain,
		"ResolvConf": resolv, "PodLogs": filepath.Join(n.opts.LogDir, "pods"),
		"VolumePlugins": filepath.Join(n.opts.Dir, "volume-plugins"),
	}); err != nil {
		return err
	}
	n.kubelet, err = n.start("kubelet", filepath.Join(n.opts.BinDir, "kubelet"),
		"--config="+config,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+dir,
		"--cert-dir="+filepath.Join(dir, "pki"),
		"--hostname-override="+Name,
		"--node-ip="+GatewayIP,
	)
	if err != nil {
		return err
	}
	if err := n.kubelet.WaitFor(ctx, n.opts.Timeout, "healthy", httpOK("http://127.0.0.1:"+strconv.Itoa(healthzPort)+"/healthz")); err != nil {
		return err
	}
	return n.waitNodeReady(ctx)
}

func (n *Node) startKubeProxy(ctx context.Context, healthzPort, metricsPort int) error {
	cp := n.opts.ControlPlane
	cert, key, err := cp.IssueClient("kube-proxy-client", "system:kube-proxy")
	if err != nil {
		return err
	}
	kubeconfig, err := cp.WriteKubeconfig("kube-proxy", cert, key)
	if err != nil {
		return err
	}
	config := filepath.Join(n.opts.Dir, "kube-proxy.yaml")
	if err := writeTemplate(config, kubeProxyConfig, map[string]any{
		"Kubeconfig": kubeconfig, "Name": Name, "NodeIP": GatewayIP,
		"HealthzPort": healthzPort, "MetricsPort": metricsPort, "PodCIDR": PodCIDR,
	}); err != nil {
		return err
	}
	if n.kubeProxy, err = n.start("kube-proxy", filepath.Join(n.opts.BinDir, "kube-proxy"), "--config="+config); err != nil {
		return err
	}
	return n.kubeProxy.WaitFor(ctx, n.opts.Timeout, "healthy", httpOK("http://127.0.0.1:"+strconv.Itoa(healthzPort)+"/healthz"))
}

var plainHTTP = &http.Client{Timeout: 10 * time.Second}

func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := plainHTTP.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	}
}
