package tlsfiles_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/payments-svc/payments-svc/internal/testsupport"
	"github.com/payments-svc/payments-svc/internal/tlsfiles"
	"github.com/payments-svc/payments-svc/internal/tlsfiles/tlstest"
)

// newClock is a settable clock for Options.Now.
func newClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// grpcServer serves grpc.health.v1 over TLS with cfg and records the client
// certificate the server saw on the last call.
type grpcServer struct {
	addr string
	mu   sync.Mutex
	peer *x509.Certificate
}

func (g *grpcServer) lastPeer() *x509.Certificate {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peer
}

func serveGRPC(t *testing.T, cfg *tls.Config) *grpcServer {
	t.Helper()
	g := &grpcServer{}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		var cert *x509.Certificate
		if p, ok := peer.FromContext(ctx); ok {
			if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
				cert = info.State.PeerCertificates[0]
			}
		}
		g.mu.Lock()
		g.peer = cert
		g.mu.Unlock()
		return next(ctx, req)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.UnaryInterceptor(record))
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	g.addr = lis.Addr().String()
	return g
}

// check makes one health call on a new connection, so a new handshake, and
// returns the serial of the server certificate it got.
func check(t *testing.T, addr string, cfg *tls.Config) (*big.Int, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber, nil
}

func clientConfig(t *testing.T, o tlsfiles.ClientOptions) *tls.Config {
	t.Helper()
	cfg, err := tlsfiles.ClientConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newServer(t *testing.T, o tlsfiles.Options) *tlsfiles.Server {
	t.Helper()
	s, err := tlsfiles.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGRPCHandshake(t *testing.T) {
	dir := t.TempDir()
	serverCA := tlstest.NewCA(t, "server CA")
	clientCA := tlstest.NewCA(t, "client CA")
	otherCA := tlstest.NewCA(t, "other CA")
	serverCAFile := serverCA.Write(t, dir, "server-ca.pem")
	clientCAFile := clientCA.Write(t, dir, "client-ca.pem")
	otherCAFile := otherCA.Write(t, dir, "other-ca.pem")
	certFile, keyFile := serverCA.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	goodClient := clientCA.Issue(t, tlstest.Template{CommonName: "merchant-1", Client: true})
	goodCert, goodKey := goodClient.Write(t, dir, "good-client")
	strangerCert, strangerKey := otherCA.Issue(t, tlstest.Template{CommonName: "stranger", Client: true}).Write(t, dir, "stranger")
	expiredCert, expiredKey := clientCA.Issue(t, tlstest.Template{CommonName: "expired", Client: true, NotAfter: time.Now().Add(-time.Hour)}).Write(t, dir, "expired")

	tlsOnly := serveGRPC(t, newServer(t, tlsfiles.Options{CertFile: certFile, KeyFile: keyFile}).Config())
	mtls := serveGRPC(t, newServer(t, tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCAFile}).Config())

	tests := []struct {
		name     string
		server   *grpcServer
		client   tlsfiles.ClientOptions
		wantErr  bool
		wantPeer string // CommonName of the client certificate the server saw
	}{
		{name: "trusted server CA", server: tlsOnly, client: tlsfiles.ClientOptions{CAFile: serverCAFile}},
		{name: "server name override", server: tlsOnly, client: tlsfiles.ClientOptions{CAFile: serverCAFile, ServerName: tlstest.ServerName}},
		{name: "wrong server name", server: tlsOnly, client: tlsfiles.ClientOptions{CAFile: serverCAFile, ServerName: "elsewhere.test"}, wantErr: true},
		{name: "untrusted server CA", server: tlsOnly, client: tlsfiles.ClientOptions{CAFile: otherCAFile}, wantErr: true},
		{name: "insecure skip verify", server: tlsOnly, client: tlsfiles.ClientOptions{InsecureSkipVerify: true}},
		{name: "mtls without client cert", server: mtls, client: tlsfiles.ClientOptions{CAFile: serverCAFile}},
		{name: "mtls with trusted client cert", server: mtls, client: tlsfiles.ClientOptions{CAFile: serverCAFile, CertFile: goodCert, KeyFile: goodKey}, wantPeer: "merchant-1"},
		{name: "mtls with untrusted client cert", server: mtls, client: tlsfiles.ClientOptions{CAFile: serverCAFile, CertFile: strangerCert, KeyFile: strangerKey}, wantErr: true},
		{name: "mtls with expired client cert", server: mtls, client: tlsfiles.ClientOptions{CAFile: serverCAFile, CertFile: expiredCert, KeyFile: expiredKey}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := check(t, tt.server.addr, clientConfig(t, tt.client))
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("health check error = %v, want error: %t", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			var got string
			if p := tt.server.lastPeer(); p != nil {
				got = p.Subject.CommonName
			}
			if got != tt.wantPeer {
				t.Errorf("client certificate seen by the server = %q, want %q", got, tt.wantPeer)
			}
		})
	}
}

// reloads counts the callbacks.
type reloads struct {
	mu   sync.Mutex
	ok   int
	errs []error
}

func (r *reloads) onReload() { r.mu.Lock(); r.ok++; r.mu.Unlock() }

func (r *reloads) onError(err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() }

func (r *reloads) counts() (int, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, append([]error(nil), r.errs...)
}

func TestRotationWithoutRestart(t *testing.T) {
	const interval = 5 * time.Second
	tests := []struct {
		name string
		// write puts a server certificate and key at the paths it returns.
		write func(t *testing.T, dir string, certPEM, keyPEM []byte) (certFile, keyFile string)
	}{
		{name: "files replaced by rename", write: func(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
			certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			tlstest.Replace(t, certFile, certPEM)
			tlstest.Replace(t, keyFile, keyPEM)
			return certFile, keyFile
		}},
		{name: "secret volume symlink swap", write: func(t *testing.T, dir string, certPEM, keyPEM []byte) (string, string) {
			tlstest.SecretVolume(t, dir, map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM})
			return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, caDir := t.TempDir(), t.TempDir()
			ca := tlstest.NewCA(t, "CA")
			client := clientConfig(t, tlsfiles.ClientOptions{CAFile: ca.Write(t, caDir, "ca.pem")})
			first := ca.Issue(t, tlstest.Template{CommonName: "first"})
			second := ca.Issue(t, tlstest.Template{CommonName: "second"})
			third := ca.Issue(t, tlstest.Template{CommonName: "third"})

			certFile, keyFile := tt.write(t, dir, first.CertPEM, first.KeyPEM)
			clk := newClock()
			var r reloads
			srv := newServer(t, tlsfiles.Options{
				CertFile: certFile, KeyFile: keyFile, CheckInterval: interval,
				Now: clk.Now, OnReload: r.onReload, OnReloadError: r.onError,
			})
			addr := serveGRPC(t, srv.Config()).addr

			handshake := func(step string, want *tlstest.Cert) {
				t.Helper()
				got, err := check(t, addr, client)
				if err != nil {
					t.Fatalf("%s: health check error = %v, want nil", step, err)
				}
				if got.Cmp(want.Leaf.SerialNumber) != 0 {
					t.Errorf("%s: server certificate serial = %v, want %v (%s)", step, got, want.Leaf.SerialNumber, want.Leaf.Subject.CommonName)
				}
			}
			handshake("before rotation", first)

			tt.write(t, dir, second.CertPEM, second.KeyPEM)
			clk.Advance(interval - time.Nanosecond)
			handshake("rotated, check not yet due", first)
			clk.Advance(time.Nanosecond)
			handshake("rotated, check due", second)
			if got := srv.Certificate().SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
				t.Errorf("Certificate().SerialNumber = %v, want %v", got, second.Leaf.SerialNumber)
			}

			// A key that does not match the certificate, as when one file
			// was written and the other not yet.
			tt.write(t, dir, third.CertPEM, first.KeyPEM)
			clk.Advance(interval)
			handshake("broken replacement", second)
			ok, errs := r.counts()
			if ok != 1 || len(errs) != 1 {
				t.Fatalf("after a broken replacement: %d reloads and errors %v, want 1 reload and 1 error", ok, errs)
			}
			if !strings.Contains(errs[0].Error(), certFile) {
				t.Errorf("OnReloadError(%q), want the error to name %s", errs[0], certFile)
			}

			tt.write(t, dir, third.CertPEM, third.KeyPEM)
			clk.Advance(interval)
			handshake("repaired", third)
			clk.Advance(interval)
			handshake("unchanged files", third)
			if ok, errs := r.counts(); ok != 2 || len(errs) != 1 {
				t.Errorf("at the end: %d reloads and %d errors, want 2 reloads and 1 error", ok, len(errs))
			}
		})
	}
}

func TestClientCARotation(t *testing.T) {
	dir := t.TempDir()
	serverCA, oldCA, newCA := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "old client CA"), tlstest.NewCA(t, "new client CA")
	certFile, keyFile := serverCA.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	clientCAFile := oldCA.Write(t, dir, "client-ca.pem")
	newCert, newKey := newCA.Issue(t, tlstest.Template{CommonName: "new", Client: true}).Write(t, dir, "new-client")
	client := clientConfig(t, tlsfiles.ClientOptions{CAFile: serverCA.Write(t, dir, "server-ca.pem"), CertFile: newCert, KeyFile: newKey})

	clk := newClock()
	srv := newServer(t, tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCAFile, Now: clk.Now})
	g := serveGRPC(t, srv.Config())
	if _, err := check(t, g.addr, client); err == nil {
		t.Fatalf("client cert from a CA not yet trusted: health check error = nil, want one")
	}
	newCA.Write(t, dir, "client-ca.pem")
	clk.Advance(tlsfiles.DefaultCheckInterval)
	if _, err := check(t, g.addr, client); err != nil {
		t.Fatalf("client cert from the rotated-in CA: health check error = %v, want nil", err)
	}
	if got := g.lastPeer().Subject.CommonName; got != "new" {
		t.Errorf("client certificate seen by the server = %q, want %q", got, "new")
	}
}

func TestConcurrentHandshakesDuringRotation(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	first, second := ca.Issue(t, tlstest.Template{CommonName: "first"}), ca.Issue(t, tlstest.Template{CommonName: "second"})
	certFile, keyFile := first.Write(t, dir, "server")
	clk := newClock()
	var r reloads
	srv := newServer(t, tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, Now: clk.Now, OnReload: r.onReload, OnReloadError: r.onError})
	cfg := srv.Config()
	second.Write(t, dir, "server")
	clk.Advance(tlsfiles.DefaultCheckInterval)

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			got, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
			if err != nil {
				t.Errorf("GetConfigForClient() error = %v, want nil", err)
				return
			}
			serial := got.Certificates[0].Leaf.SerialNumber
			if serial.Cmp(first.Leaf.SerialNumber) != 0 && serial.Cmp(second.Leaf.SerialNumber) != 0 {
				t.Errorf("GetConfigForClient() serial = %v, want the first or the second", serial)
			}
		})
	}
	wg.Wait()
	if ok, errs := r.counts(); ok != 1 || len(errs) != 0 {
		t.Errorf("%d reloads and errors %v, want exactly 1 reload", ok, errs)
	}
}

func TestHTTPServer(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	caFile := ca.Write(t, dir, "ca.pem")
	certFile, keyFile := ca.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	clientCert, clientKey := ca.Issue(t, tlstest.Template{CommonName: "merchant-2", Client: true}).Write(t, dir, "client")
	srv := newServer(t, tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		TLSConfig: srv.Config(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := "anonymous"
			if len(r.TLS.PeerCertificates) > 0 {
				name = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			_, _ = io.WriteString(w, r.Proto+" "+name)
		}),
	}
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(lis, "", "") }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS() = %v, want ErrServerClosed", err)
		}
	})
	url := "https://" + lis.Addr().String() + "/"

	tests := []struct {
		name   string
		client tlsfiles.ClientOptions
		http2  bool
		want   string
	}{
		{name: "http/1.1", client: tlsfiles.ClientOptions{CAFile: caFile}, want: "HTTP/1.1 anonymous"},
		{name: "h2", client: tlsfiles.ClientOptions{CAFile: caFile}, http2: true, want: "HTTP/2.0 anonymous"},
		{name: "h2 with client cert", client: tlsfiles.ClientOptions{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}, http2: true, want: "HTTP/2.0 merchant-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: clientConfig(t, tt.client), ForceAttemptHTTP2: tt.http2}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(body); got != tt.want {
				t.Errorf("GET %s = %q, want %q", url, got, tt.want)
			}
		})
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	caFile := ca.Write(t, dir, "ca.pem")
	certFile, keyFile := ca.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	_, otherKey := ca.Issue(t, tlstest.Template{CommonName: "other"}).Write(t, dir, "other")
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIF"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		opts     tlsfiles.Options
		wantName string // the error names this file
	}{
		{name: "no files", opts: tlsfiles.Options{}, wantName: "certificate and key"},
		{name: "missing cert", opts: tlsfiles.Options{CertFile: missing, KeyFile: keyFile}, wantName: missing},
		{name: "missing key", opts: tlsfiles.Options{CertFile: certFile, KeyFile: missing}, wantName: missing},
		{name: "missing client CA", opts: tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: missing}, wantName: missing},
		{name: "half-written cert", opts: tlsfiles.Options{CertFile: garbage, KeyFile: keyFile}, wantName: garbage},
		{name: "mismatched key", opts: tlsfiles.Options{CertFile: certFile, KeyFile: otherKey}, wantName: otherKey},
		{name: "client CA without certificates", opts: tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: garbage}, wantName: garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tlsfiles.New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantName) {
				t.Fatalf("New() error = %v, want one naming %q", err, tt.wantName)
			}
			if msg := err.Error(); strings.ToLower(msg[:1]) != msg[:1] {
				t.Errorf("New() error = %q, want it to start in lowercase", msg)
			}
		})
	}
	if _, err := tlsfiles.New(tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}); err != nil {
		t.Errorf("New() with good files = %v, want nil", err)
	}
}

func TestReloadReportsMissingFile(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	cert := ca.Issue(t, tlstest.Template{CommonName: "server"})
	certFile, keyFile := cert.Write(t, dir, "server")
	clk := newClock()
	var r reloads
	srv := newServer(t, tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, Now: clk.Now, OnReloadError: r.onError})
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	clk.Advance(tlsfiles.DefaultCheckInterval)
	got, err := srv.Config().GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatalf("GetConfigForClient() error = %v, want nil (the old certificate)", err)
	}
	if serial := got.Certificates[0].Leaf.SerialNumber; serial.Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Errorf("serial after the key vanished = %v, want %v", serial, cert.Leaf.SerialNumber)
	}
	if _, errs := r.counts(); len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) {
		t.Errorf("OnReloadError calls = %v, want one with os.ErrNotExist", errs)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	caFile := ca.Write(t, dir, "ca.pem")
	certFile, keyFile := ca.Issue(t, tlstest.Template{CommonName: "c", Client: true}).Write(t, dir, "client")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		opts    tlsfiles.ClientOptions
		wantErr string
	}{
		{name: "system roots", opts: tlsfiles.ClientOptions{}},
		{name: "everything", opts: tlsfiles.ClientOptions{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "x"}},
		{name: "missing CA", opts: tlsfiles.ClientOptions{CAFile: missing}, wantErr: missing},
		{name: "cert without key", opts: tlsfiles.ClientOptions{CertFile: certFile}, wantErr: "go together"},
		{name: "key without cert", opts: tlsfiles.ClientOptions{KeyFile: keyFile}, wantErr: "go together"},
		{name: "missing cert", opts: tlsfiles.ClientOptions{CertFile: missing, KeyFile: keyFile}, wantErr: missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tlsfiles.ClientConfig(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ClientConfig() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ClientConfig() error = %v, want nil", err)
			}
			if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != tt.opts.ServerName || (tt.opts.CAFile != "") != (cfg.RootCAs != nil) || (tt.opts.CertFile != "") != (cfg.GetClientCertificate != nil) {
				t.Errorf("ClientConfig(%+v) = %+v, want TLS 1.2+, the server name, the roots and the certificate asked for", tt.opts, cfg)
			}
		})
	}
}
