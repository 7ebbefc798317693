package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/tlsfiles"
	"github.com/payments-svc/payments-svc/internal/tlsfiles/tlstest"
	grpctransport "github.com/payments-svc/payments-svc/internal/transport/grpc"
	"github.com/payments-svc/payments-svc/internal/webhook"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// receiver is a webhook endpoint that verifies like the server and records
// what it got.
func receiver(t *testing.T, status int) (*httptest.Server, *[]byte) {
	t.Helper()
	return newReceiver(t, status, nil)
}

// newReceiver is receiver over TLS with tlsCfg, or plaintext if it is nil.
func newReceiver(t *testing.T, status int, tlsCfg *tls.Config) (*httptest.Server, *[]byte) {
	t.Helper()
	key, err := webhook.ParseSecret(devSecret)
	if err != nil {
		t.Fatal(err)
	}
	v := webhook.NewVerifier([][]byte{key}, time.Minute, nil)
	var got []byte
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := v.Verify(r.Header.Get(webhook.HeaderID), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got = body
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"outcome":"applied"}`))
	}))
	if tlsCfg == nil {
		srv.Start()
	} else {
		srv.TLS = tlsCfg
		srv.StartTLS()
	}
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
	req := payments.Request{MerchantID: auth.DevMerchant, AmountMinor: 777, Currency: "JPY", OrderID: "o", IdempotencyKey: "k"}
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

// fakePayments answers GetPayment with a EUR 555 payment and records the
// authorization metadata and the client certificate of the last call.
type fakePayments struct {
	paymentsv1.UnimplementedPaymentServiceServer
	mu         sync.Mutex
	auth, peer string
}

func (p *fakePayments) GetPayment(ctx context.Context, req *paymentsv1.GetPaymentRequest) (*paymentsv1.GetPaymentResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var cn string
	if pr, ok := peer.FromContext(ctx); ok {
		if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			cn = info.State.PeerCertificates[0].Subject.CommonName
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.auth, p.peer = strings.Join(md.Get("authorization"), ","), cn
	return &paymentsv1.GetPaymentResponse{PaymentId: req.GetPaymentId(), AmountMinor: 555, Currency: "EUR"}, nil
}

func (p *fakePayments) last() (auth, peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auth, p.peer
}

func TestRunOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := tlstest.NewCA(t, "CA"), tlstest.NewCA(t, "other CA")
	caFile, otherFile := ca.Write(t, dir, "ca.pem"), other.Write(t, dir, "other.pem")
	certFile, keyFile := ca.Issue(t, tlstest.Template{CommonName: "server"}).Write(t, dir, "server")
	clientCert, clientKey := ca.Issue(t, tlstest.Template{CommonName: "provider", Client: true}).Write(t, dir, "client")
	srv, err := tlsfiles.New(tlsfiles.Options{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakePayments{}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srv.Config())))
	paymentsv1.RegisterPaymentServiceServer(gs, fake)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	hook, got := newReceiver(t, http.StatusOK, srv.Config())
	id := payments.NewID("m_test", "k", time.Now())

	tests := []struct {
		name     string
		env      string // $PROVIDER_SIM_API_KEY
		flags    []string
		wantErr  bool
		wantAuth string
		wantPeer string
	}{
		{name: "dev key by default", flags: []string{"-grpc-tls", "-cacert", caFile}, wantAuth: "Bearer " + auth.DevKey},
		{name: "key from the environment", env: "pk_env", flags: []string{"-grpc-tls", "-cacert", caFile}, wantAuth: "Bearer pk_env"},
		{name: "key flag over the environment", env: "pk_env", flags: []string{"-grpc-tls", "-cacert", caFile, "-api-key", "pk_flag"}, wantAuth: "Bearer pk_flag"},
		{name: "client certificate", flags: []string{"-grpc-tls", "-cacert", caFile, "-cert", clientCert, "-key", clientKey}, wantAuth: "Bearer " + auth.DevKey, wantPeer: "provider"},
		{name: "server name", flags: []string{"-grpc-tls", "-cacert", caFile, "-servername", tlstest.ServerName}, wantAuth: "Bearer " + auth.DevKey},
		{name: "insecure skip verify", flags: []string{"-grpc-tls", "-insecure-skip-verify"}, wantAuth: "Bearer " + auth.DevKey},
		{name: "untrusted CA", flags: []string{"-grpc-tls", "-cacert", otherFile}, wantErr: true},
		{name: "https with an untrusted CA", flags: []string{"-cacert", otherFile, "-amount", "1", "-currency", "USD"}, wantErr: true},
		{name: "plaintext lookup against tls", flags: []string{"-cacert", caFile}, wantErr: true},
		{name: "cert without grpc-tls", flags: []string{"-cacert", caFile, "-cert", clientCert, "-key", clientKey}, wantErr: true},
		{name: "missing CA file", flags: []string{"-grpc-tls", "-cacert", dir + "/nope.pem"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PROVIDER_SIM_API_KEY", tt.env)
			*got = nil
			args := append([]string{"-url", hook.URL, "-grpc-addr", lis.Addr().String(), "-payment-id", id, "-timeout", "10s"}, tt.flags...)
			err := run(context.Background(), args, io.Discard)
			if tt.wantErr {
				if err == nil {
					t.Errorf("run(%q) = nil, want an error", args)
				}
				return
			}
			if err != nil {
				t.Fatalf("run(%q) = %v, want nil", args, err)
			}
			if auth, cn := fake.last(); auth != tt.wantAuth || cn != tt.wantPeer {
				t.Errorf("GetPayment saw authorization %q and client certificate %q, want %q and %q", auth, cn, tt.wantAuth, tt.wantPeer)
			}
			if ev, err := webhook.DecodeEvent(*got); err != nil || ev.AmountMinor != 555 || ev.Currency != "EUR" {
				t.Errorf("delivered over https %+v (%v), want a EUR 555 event", ev, err)
			}
		})
	}
}

// TestRunPropagatesTraceContext: with a tracer provider installed, each
// delivery carries a W3C traceparent of the caller's trace, so the
// service's webhook span joins the sim's trace.
func TestRunPropagatesTraceContext(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	var traceparent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparent = r.Header.Get("Traceparent")
		_, _ = w.Write([]byte(`{"outcome":"applied"}`))
	}))
	t.Cleanup(srv.Close)
	ctx, span := tp.Tracer("test").Start(context.Background(), "caller")
	defer span.End()
	id := payments.NewID("m_test", "k", time.Now())
	var out bytes.Buffer
	if err := run(ctx, []string{"-url", srv.URL, "-payment-id", id, "-amount", "1234", "-currency", "USD"}, &out); err != nil {
		t.Fatalf("run() error = %v\n%s", err, out.String())
	}
	want := span.SpanContext().TraceID().String()
	if parts := strings.Split(traceparent, "-"); len(parts) != 4 || parts[1] != want {
		t.Errorf("traceparent = %q, want one in trace %s", traceparent, want)
	}
}
