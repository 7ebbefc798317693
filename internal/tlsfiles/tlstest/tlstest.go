// Package tlstest makes throwaway certificate authorities and certificates
// (ECDSA P-256) for tests, and writes them the ways files change in
// production: replaced by rename, or swapped behind a Kubernetes-style
// ..data symlink.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ServerName is the DNS name in every server certificate, besides
// localhost and 127.0.0.1.
const ServerName = "payments.test"

// CA is a certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// Cert is an issued certificate with its key.
type Cert struct {
	Leaf            *x509.Certificate
	CertPEM, KeyPEM []byte
}

// Template says what to issue.
type Template struct {
	CommonName string
	// Client issues a client certificate; otherwise a server certificate
	// for ServerName, localhost and 127.0.0.1.
	Client bool
	// NotAfter defaults to an hour from now.
	NotAfter time.Time
	// URIs are URI SANs, such as a SPIFFE id naming a merchant.
	URIs []*url.URL
}

// NewCA makes a self-signed CA.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key}
}

// Issue signs a certificate.
func (ca *CA) Issue(t testing.TB, tmpl Template) *Cert {
	t.Helper()
	key := newKey(t)
	notAfter := tmpl.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(time.Hour)
	}
	c := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: tmpl.CommonName},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{ServerName, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if tmpl.Client {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		c.DNSNames, c.IPAddresses = nil, nil
	}
	c.URIs = tmpl.URIs
	der, err := x509.CreateCertificate(rand.Reader, c, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{Leaf: leaf, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: pemBlock("PRIVATE KEY", keyDER)}
}

// Write writes the CA certificate to dir/name and returns its path.
func (ca *CA) Write(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	Replace(t, path, ca.CertPEM)
	return path
}

// Write writes the certificate and key to dir/<name>.crt and
// dir/<name>.key, replacing any that exist, and returns their paths.
func (c *Cert) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	Replace(t, certFile, c.CertPEM)
	Replace(t, keyFile, c.KeyPEM)
	return certFile, keyFile
}

// Replace writes data to a temporary file beside path and renames it over
// path, so a reader sees the old file or the new one, never half of one.
func Replace(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// SecretVolume lays files out as the kubelet does for a Secret volume:
// dir/<name> -> ..data/<name>, ..data -> a timestamped directory. Each call
// writes a new directory and swaps ..data to it atomically.
func SecretVolume(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	gen, err := os.MkdirTemp(dir, "..gen_")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(gen, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(gen), tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
