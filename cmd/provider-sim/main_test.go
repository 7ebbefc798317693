package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/health"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	grpctransport "github.com/payments-svc/payments-svc/internal/transport/grpc"
	"github.com/payments-svc/payments-svc/internal/webhook"
)

// receiver is a webhook endpoint that verifies like the server and records
// what it got.
func receiver(t *testing.T, status int) (*httptest.Server, *[]byte) {
	t.Helper()
	key, err := webhook.ParseSecret(devSecret)
	if err != nil {
		t.Fatal(err)
	}
	v := webhook.NewVerifier([][]byte{key}, time.Minute, nil)
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header.Get(webhook.HeaderID), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got = body
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"outcome":"applied"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestRunSignsAndDelivers(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	id := payments.NewID("m_test", "k", time.Now())
	var out bytes.Buffer
	err := run(context.Background(), []string{"-url", srv.URL, "-payment-id", id, "-outcome", "failed", "-reason", "expired_card", "-amount", "1234", "-currency", "USD", "-phone", "+14155550123", "-event-id", "msg_fixed"}, &out)
	if err != nil {
		t.Fatalf("run() error = %v\n%s", err, out.String())
	}
	ev, err := webhook.DecodeEvent(*got)
	if err != nil {
		t.Fatalf("delivered body does not decode: %v\n%s", err, *got)
	}
	if ev.Type != webhook.TypeFailed || ev.PaymentID != id || ev.FailureReason != "expired_card" || ev.AmountMinor != 1234 || ev.PayerPhone != "+14155550123" {
		t.Errorf("delivered event = %+v, want a failed USD 1234 event with its reason and phone", ev)
	}
	if !strings.Contains(out.String(), "HTTP 200 OK") || !strings.Contains(out.String(), "msg_fixed") {
		t.Errorf("output = %q, want the status and the webhook-id", out.String())
	}
}

func TestRunRepeatSendsTheSameMessage(t *testing.T) {
	var bodies []string
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		ids = append(ids, r.Header.Get(webhook.HeaderID))
	}))
	t.Cleanup(srv.Close)
	id := payments.NewID("m_test", "k", time.Now())
	if err := run(context.Background(), []string{"-url", srv.URL, "-payment-id", id, "-amount", "1", "-currency", "USD", "-repeat", "3"}, io.Discard); err != nil {
		t.Fatalf("run() error = %v", err)
	}
	if len(bodies) != 3 || bodies[0] != bodies[1] || bodies[1] != bodies[2] || ids[0] != ids[2] {
		t.Errorf("deliveries = %q with ids %q, want 3 identical messages", bodies, ids)
	}
}

func TestRunLooksUpAmountOverGRPC(t *testing.T) {
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rc.Close() })
	repo := storage.New(rc, storage.Options{IdempotencyTTL: time.Hour})
	req := payments.Request{MerchantID: "m_test", AmountMinor: 777, Currency: "JPY", OrderID: "o", IdempotencyKey: "k"}
	p := payments.New(req, time.Now())
	if _, _, err := repo.Create(context.Background(), p, payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	gs := grpctransport.NewServer(grpctransport.ServerConfig{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Service: grpctransport.NewService(repo, nil, nil, nil),
		Authenticator: auth.NewAuthenticator(auth.DevKeys()),
		Health:        health.NewServer(), MaxRecvBytes: 1 << 16,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	srv, got := receiver(t, http.StatusOK)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-url", srv.URL, "-grpc-addr", lis.Addr().String(), "-payment-id", p.ID}, &out); err != nil {
		t.Fatalf("run() error = %v", err)
	}
	ev, err := webhook.DecodeEvent(*got)
	if err != nil || ev.AmountMinor != 777 || ev.Currency != "JPY" || ev.Type != webhook.TypeSucceeded {
		t.Errorf("delivered %+v (%v), want a succeeded JPY 777 event", ev, err)
	}
}

func TestRunErrors(t *testing.T) {
	refusing, _ := receiver(t, http.StatusConflict)
	id := payments.NewID("m_test", "k", time.Now())
	tests := []struct {
		name string
		args []string
		want error
	}{
		{name: "help", args: []string{"-h"}, want: flag.ErrHelp},
		{name: "no payment id", args: nil},
		{name: "bad outcome", args: []string{"-payment-id", id, "-outcome", "refunded"}},
		{name: "bad repeat", args: []string{"-payment-id", id, "-repeat", "0"}},
		{name: "bad secret", args: []string{"-payment-id", id, "-secret", "nope", "-amount", "1", "-currency", "USD"}},
		{name: "lookup fails", args: []string{"-payment-id", id, "-grpc-addr", "127.0.0.1:1", "-timeout", "300ms"}},
		{name: "refused delivery", args: []string{"-url", refusing.URL, "-payment-id", id, "-amount", "1", "-currency", "USD"}},
		{name: "unreachable endpoint", args: []string{"-url", "http://127.0.0.1:1/x", "-payment-id", id, "-amount", "1", "-currency", "USD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("run(%q) = %v, want an error (%v)", tt.args, err, tt.want)
			}
		})
	}
}
