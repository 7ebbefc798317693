package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/payments-svc/payments-svc/internal/tlsfiles"
	"github.com/payments-svc/payments-svc/internal/tlsfiles/tlstest"
)

// These tests call run in-process; binary_test.go runs the real binary.

func TestRunArguments(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantErr    error // matched with errors.Is; nil means success
		wantAnyErr bool
		wantOut    []string
	}{
		{name: "help lists variables", args: []string{"-h"}, wantErr: flag.ErrHelp, wantOut: []string{"PAYMENTS_GRPC_ADDR", "PAYMENTS_REDIS_ADDRS", ":50051", "healthcheck"}},
		{name: "version", args: []string{"version"}, wantOut: []string{"payments-svc dev"}},
		{name: "unknown argument", args: []string{"serve-forever"}, wantAnyErr: true},
		{name: "healthcheck bad flag", args: []string{"healthcheck", "-nope"}, wantAnyErr: true},
		{name: "healthcheck against nothing", args: []string{"healthcheck", "-addr", "127.0.0.1:1", "-timeout", "200ms"}, wantErr: errUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("run(%q) error = %v, want %v", tt.args, err, tt.wantErr)
			case tt.wantErr == nil && tt.wantAnyErr && err == nil:
				t.Errorf("run(%q) error = nil, want one", tt.args)
			case tt.wantErr == nil && !tt.wantAnyErr && err != nil:
				t.Errorf("run(%q) error = %v, want nil", tt.args, err)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("run(%q) stdout lacks %q:\n%s", tt.args, want, stdout.String())
				}
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	if got := exitCode(flag.ErrHelp); got != 0 {
		t.Errorf("exitCode(ErrHelp) = %d, want 0", got)
	}
	if got := exitCode(errUnhealthy); got != 1 {
		t.Errorf("exitCode(errUnhealthy) = %d, want 1", got)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	t.Setenv("PAYMENTS_SHUTDOWN_TIMEOUT", "forever")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "PAYMENTS_SHUTDOWN_TIMEOUT") {
		t.Errorf("run() with a bad duration = %v, want an error naming PAYMENTS_SHUTDOWN_TIMEOUT", err)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	t.Setenv("PAYMENTS_GRPC_ADDR", "127.0.0.1:0")
	t.Setenv("PAYMENTS_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("PAYMENTS_ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("PAYMENTS_WEBHOOK_SECRETS", testSecret)
	t.Setenv("PAYMENTS_UNKNOWN_SETTING", "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run starts, sees the context is done, and shuts down at once.
	var stdout, stderr bytes.Buffer
	if err := run(ctx, nil, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v, want nil after cancellation", err)
	}
	// Even when the context is done before run starts, the log tells the
	// whole story in order: the listeners are announced before the shutdown.
	out := stdout.String()
	last := -1
	for _, want := range []string{"PAYMENTS_UNKNOWN_SETTING", "EMBEDDED STORE", "grpc server listening", "http server listening", "admin server listening", "shutdown started", "shutdown complete"} {
		i := strings.Index(out, want)
		switch {
		case i < 0:
			t.Errorf("log lacks %q:\n%s", want, out)
		case i < last:
			t.Errorf("log has %q out of order:\n%s", want, out)
		default:
			last = i
		}
	}
}

func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA, other := tlstest.NewCA(t, "CA"), tlstest.NewCA(t, "client CA"), tlstest.NewCA(t, "other CA")
	caFile, otherFile := ca.Write(t, dir, "ca.pem"), other.Write(t, dir, "other.pem")
	certFile, keyFile := ca.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	clientCert, clientKey := clientCA.Issue(t, tlstest.Template{CommonName: "probe", Client: true}).Write(t, dir, "client")
	strangerCert, strangerKey := other.Issue(t, tlstest.Template{CommonName: "stranger", Client: true}).Write(t, dir, "stranger")
	srv, err := tlsfiles.New(tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA.Write(t, dir, "client-ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("payments.v1.PaymentService", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srv.Config())))
	healthpb.RegisterHealthServer(gs, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()

	tests := []struct {
		name        string
		flags       []string
		wantErr     bool
		wantFlagErr bool // the error is about the flags, not errUnhealthy
	}{
		{name: "tls with the CA", flags: []string{"-tls", "-cacert", caFile}},
		{name: "cacert implies tls", flags: []string{"-cacert", caFile}},
		{name: "server name", flags: []string{"-cacert", caFile, "-servername", tlstest.ServerName}},
		{name: "insecure skip verify", flags: []string{"-tls", "-insecure-skip-verify"}},
		{name: "client certificate", flags: []string{"-cacert", caFile, "-cert", clientCert, "-key", clientKey}},
		{name: "plaintext against tls", flags: nil, wantErr: true},
		{name: "untrusted server", flags: []string{"-tls", "-cacert", otherFile}, wantErr: true},
		{name: "wrong server name", flags: []string{"-cacert", caFile, "-servername", "elsewhere.test"}, wantErr: true},
		{name: "untrusted client certificate", flags: []string{"-cacert", caFile, "-cert", strangerCert, "-key", strangerKey}, wantErr: true},
		{name: "cert without key", flags: []string{"-cacert", caFile, "-cert", clientCert}, wantErr: true, wantFlagErr: true},
		{name: "missing CA file", flags: []string{"-cacert", dir + "/nope.pem"}, wantErr: true, wantFlagErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"healthcheck", "-addr", addr, "-timeout", "10s"}, tt.flags...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			switch {
			case !tt.wantErr && err != nil:
				t.Errorf("run(%q) = %v, want nil", args, err)
			case tt.wantErr && err == nil:
				t.Errorf("run(%q) = nil, want an error", args)
			case tt.wantErr && errors.Is(err, errUnhealthy) == tt.wantFlagErr:
				t.Errorf("run(%q) = %v, want errors.Is(err, errUnhealthy) = %t", args, err, !tt.wantFlagErr)
			}
		})
	}
}
