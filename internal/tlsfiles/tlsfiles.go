// Package tlsfiles owns the TLS material payments-svc reads from disk: the
// server certificate and key, the optional client CA bundle that turns on
// mTLS, and their reload without a restart when cert-manager rotates the
// files. It also builds the client configs of the tools that call the server
// (the healthcheck subcommand and provider-sim).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is the least time between two looks at the files
// when Options.CheckInterval is zero.
const DefaultCheckInterval = 5 * time.Second

// Options configures a Server.
type Options struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and key.
	CertFile, KeyFile string
	// ClientCAFile, if set, is a PEM bundle of the CAs whose client
	// certificates are accepted. Clients without a certificate still connect
	// (tls.VerifyClientCertIfGiven) so that API-key-only callers keep working;
	// a certificate that is given must verify.
	ClientCAFile string
	// CheckInterval is the least time between two looks at the files;
	// DefaultCheckInterval if zero.
	CheckInterval time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// OnReload, if set, is called after new files were loaded.
	OnReload func()
	// OnReloadError, if set, is called when changed files could not be
	// loaded. The old material stays in use and the load is retried at the
	// next check.
	OnReloadError func(error)
}

// Server serves the current certificate, key and client CA pool to TLS
// handshakes, re-reading the files when they change.
type Server struct {
	opts Options

	current   atomic.Pointer[tls.Config] // what handshakes get
	nextCheck atomic.Int64               // unix nanoseconds
	reloading atomic.Bool                // held by the one goroutine checking the files

	// Written only while reloading is held.
	seen []os.FileInfo
}

// New loads the files and fails, naming the file, if one is missing or
// invalid, so that a server with broken TLS material refuses to start.
func New(opts Options) (*Server, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tls certificate and key files are both required")
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts}
	seen, cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	s.seen = seen
	s.current.Store(cfg)
	s.nextCheck.Store(opts.Now().Add(opts.CheckInterval).UnixNano())
	return s, nil
}

// Config returns a server config for both the gRPC server (through
// credentials.NewTLS) and the HTTP server. Every handshake gets the
// material current at that moment.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos(),
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.maybeReload()
			return s.current.Load(), nil
		},
	}
}

// Certificate returns the leaf certificate in use, for logging its expiry.
func (s *Server) Certificate() *x509.Certificate {
	return s.current.Load().Certificates[0].Leaf
}

// nextProtos is fresh each time because the TLS stack and gRPC append to it.
// The config returned per handshake replaces the one gRPC and net/http
// decorate, so it must offer their protocols itself: gRPC refuses a
// connection without ALPN "h2".
func nextProtos() []string { return []string{"h2", "http/1.1"} }

// maybeReload checks the files if CheckInterval has passed. Handshakes that
// arrive while another one is checking use the current material.
func (s *Server) maybeReload() {
	now := s.opts.Now()
	if now.UnixNano() < s.nextCheck.Load() {
		return
	}
	if !s.reloading.CompareAndSwap(false, true) {
		return
	}
	defer s.reloading.Store(false)
	if now.UnixNano() < s.nextCheck.Load() {
		return // another handshake checked between our two loads
	}
	s.nextCheck.Store(now.Add(s.opts.CheckInterval).UnixNano())

	if !s.changed() {
		return
	}
	seen, cfg, err := s.load()
	if err != nil {
		if s.opts.OnReloadError != nil {
			s.opts.OnReloadError(err)
		}
		return
	}
	s.seen = seen
	s.current.Store(cfg)
	if s.opts.OnReload != nil {
		s.opts.OnReload()
	}
}

func (s *Server) files() []string {
	if s.opts.ClientCAFile == "" {
		return []string{s.opts.CertFile, s.opts.KeyFile}
	}
	return []string{s.opts.CertFile, s.opts.KeyFile, s.opts.ClientCAFile}
}

// changed reports whether any file differs from when it was last loaded.
// os.Stat follows symlinks, so the swap of a Kubernetes Secret volume's
// ..data link shows up as a different file. A file that cannot be stat'ed
// counts as changed, so that load reports why.
func (s *Server) changed() bool {
	for i, name := range s.files() {
		fi, err := os.Stat(name)
		if err != nil {
			return true
		}
		old := s.seen[i]
		if !os.SameFile(old, fi) || !old.ModTime().Equal(fi.ModTime()) || old.Size() != fi.Size() {
			return true
		}
	}
	return false
}

// load stats the files before reading them: if a file is replaced in
// between, the next check sees a change and loads again, rather than missing
// the new file.
func (s *Server) load() ([]os.FileInfo, *tls.Config, error) {
	names := s.files()
	seen := make([]os.FileInfo, len(names))
	for i, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, nil, fmt.Errorf("read tls file: %w", err)
		}
		seen[i] = fi
	}
	cert, err := loadKeyPair(s.opts.CertFile, s.opts.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   nextProtos(),
		Certificates: []tls.Certificate{cert},
	}
	if s.opts.ClientCAFile != "" {
		pool, err := loadPool(s.opts.ClientCAFile)
		if err != nil {
			return nil, nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return seen, cfg, nil
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile) //nolint:gosec // the operator names this file in PAYMENTS_TLS_CERT_FILE
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read tls file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile) //nolint:gosec // the operator names this file in PAYMENTS_TLS_KEY_FILE
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read tls file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

func loadPool(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name) //nolint:gosec // the operator names this file in PAYMENTS_TLS_CLIENT_CA_FILE
	if err != nil {
		return nil, fmt.Errorf("read tls file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tls CA file %s holds no PEM certificate", name)
	}
	return pool, nil
}

// ClientOptions configures a client TLS config.
type ClientOptions struct {
	// CAFile is a PEM bundle of the CAs trusted for the server certificate;
	// empty trusts the system roots.
	CAFile string
	// CertFile and KeyFile, given together, are the client certificate for
	// mTLS.
	CertFile, KeyFile string
	// ServerName is the name to verify, if not the host dialled.
	ServerName string
	// InsecureSkipVerify accepts any server certificate. For local runs
	// against a self-signed server only.
	InsecureSkipVerify bool
}

// ClientConfig builds a client config for short-lived tools: the files are
// read once.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // opt-in for local runs
	}
	if o.CAFile != "" {
		pool, err := loadPool(o.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("tls client certificate and key files go together")
	}
	if o.CertFile != "" {
		cert, err := loadKeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, err
		}
		// Certificates would send the certificate only if the server's
		// CertificateRequest names its issuer, and silently go anonymous
		// otherwise; the server's refusal is the clearer failure.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg, nil
}
