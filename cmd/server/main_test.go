package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
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
