package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPKIIssuesCertificatesTheComponentsAccept(t *testing.T) {
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)

	certFile, keyFile, err := p.serving("apiserver", []string{"kubernetes.default.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	serving := load(t, certFile, keyFile)
	for _, name := range []string{"127.0.0.1", "kubernetes.default.svc"} {
		t.Run("serving for "+name, func(t *testing.T) {
			_, err := serving.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}

	certFile, keyFile, err = p.client("admin", "admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	client := load(t, certFile, keyFile)
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: verify: %v", err)
	}
	// The API server takes the user from CN and the groups from O.
	if diff := cmp.Diff([]string{"system:masters"}, client.Subject.Organization); diff != "" {
		t.Errorf("client groups (-want +got):\n%s", diff)
	}
	if got, want := client.Subject.CommonName, "admin"; got != want {
		t.Errorf("client user: got %q, want %q", got, want)
	}
}

func load(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}
