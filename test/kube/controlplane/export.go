package controlplane

import (
	"context"
	"net"
)

// What package node needs to join a real kubelet and kube-proxy to this
// control plane: certificates from the same CA, kubeconfigs, and raw API calls.

// CAFile is the path of the cluster CA certificate (PEM).
func (cp *ControlPlane) CAFile() string { return cp.pki.CAFile }

// IssueClient writes a client certificate and key signed by the cluster CA,
// for user in groups, and returns their paths.
func (cp *ControlPlane) IssueClient(name, user string, groups ...string) (certFile, keyFile string, err error) {
	return cp.pki.client(name, user, groups...)
}

// IssueServing writes a serving certificate and key signed by the cluster CA
// for the given names and IPs, and returns their paths.
func (cp *ControlPlane) IssueServing(name string, dnsNames []string, ips []net.IP) (certFile, keyFile string, err error) {
	return cp.pki.serving(name, dnsNames, ips)
}

// WriteKubeconfig writes <Dir>/<name>.kubeconfig that authenticates with the
// given client certificate, and returns its path.
func (cp *ControlPlane) WriteKubeconfig(name, certFile, keyFile string) (string, error) {
	return cp.kubeconfig(name, certFile, keyFile)
}

// Do sends a JSON request to the API server as admin and decodes the answer
// into out when out is not nil; a non-2xx answer is an error.
func (cp *ControlPlane) Do(ctx context.Context, method, path string, in, out any) error {
	return cp.do(ctx, method, path, in, out)
}
