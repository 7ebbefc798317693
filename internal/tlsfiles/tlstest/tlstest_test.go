package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssuedCertificatesVerify(t *testing.T) {
	ca := NewCA(t, "CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tests := []struct {
		name    string
		tmpl    Template
		opts    x509.VerifyOptions
		wantErr bool
	}{
		{name: "server", tmpl: Template{CommonName: "s"}, opts: x509.VerifyOptions{DNSName: ServerName}},
		{name: "client", tmpl: Template{CommonName: "c", Client: true}, opts: x509.VerifyOptions{KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{name: "expired", tmpl: Template{CommonName: "e", NotAfter: time.Now().Add(-time.Minute)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ca.Issue(t, tt.tmpl)
			tt.opts.Roots = roots
			if _, err := c.Leaf.Verify(tt.opts); (err != nil) != tt.wantErr {
				t.Errorf("Verify() error = %v, want error: %t", err, tt.wantErr)
			}
			if _, err := tls.LoadX509KeyPair(c.Write(t, t.TempDir(), "leaf")); err != nil {
				t.Errorf("LoadX509KeyPair() of the written files error = %v, want nil", err)
			}
		})
	}
}

func TestSecretVolumeSwap(t *testing.T) {
	dir := t.TempDir()
	ca := NewCA(t, "CA")
	for _, c := range []*Cert{ca.Issue(t, Template{CommonName: "a"}), ca.Issue(t, Template{CommonName: "b"})} {
		SecretVolume(t, dir, map[string][]byte{"tls.crt": c.CertPEM, "tls.key": c.KeyPEM})
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			t.Fatalf("LoadX509KeyPair() error = %v, want nil", err)
		}
		if got, want := pair.Leaf.Subject.CommonName, c.Leaf.Subject.CommonName; got != want {
			t.Errorf("certificate behind the symlinks = %q, want %q", got, want)
		}
	}
	caFile := ca.Write(t, dir, "ca.pem")
	if got, err := os.ReadFile(caFile); err != nil || string(got) != string(ca.CertPEM) {
		t.Errorf("ReadFile(%s) = %q, %v, want the CA PEM", caFile, got, err)
	}
}
