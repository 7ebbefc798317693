// Command provider-sim plays the payment provider: it signs a settlement
// event with a Standard Webhooks secret and POSTs it to payments-svc, then
// prints the answer. Amount and currency are looked up over gRPC unless given.
// An https:// -url is verified with -cacert; -grpc-tls does the same for the
// lookup, with -cert and -key for mTLS.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	"github.com/payments-svc/payments-svc/internal/tlsfiles"
	"github.com/payments-svc/payments-svc/internal/webhook"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// devSecret matches the secret `make run` gives the server; it is public and
// only good for local runs.
const devSecret = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l" //nolint:gosec // public by design, see the Makefile

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "provider-sim:", err)
			os.Exit(1)
		}
	}
}

type options struct {
	url, grpcAddr, secret      string
	paymentID, outcome, reason string
	eventID, currency, phone   string
	apiKey                     string
	amount                     int64
	repeat                     int
	timeout                    time.Duration
	grpcTLS                    bool
	tls                        tlsfiles.ClientOptions
}

func parse(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("provider-sim", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080/v1/webhooks/provider", "webhook endpoint")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:50051", "gRPC address, to look up amount and currency")
	fs.StringVar(&o.secret, "secret", envOr("PROVIDER_SIM_SECRET", devSecret), "whsec_ signing secret (default $PROVIDER_SIM_SECRET, else the make run dev secret)")
	fs.StringVar(&o.paymentID, "payment-id", "", "payment to settle (required)")
	fs.StringVar(&o.outcome, "outcome", "succeeded", "succeeded or failed")
	fs.StringVar(&o.reason, "reason", "card_declined", "failure_reason, for -outcome failed")
	fs.StringVar(&o.eventID, "event-id", "", "webhook-id; reuse one to simulate a redelivery (default: a fresh msg_ id)")
	fs.Int64Var(&o.amount, "amount", 0, "amount_minor (default: the payment's, via gRPC)")
	fs.StringVar(&o.currency, "currency", "", "currency (default: the payment's, via gRPC)")
	fs.StringVar(&o.phone, "phone", "", "optional payer phone, E.164")
	fs.IntVar(&o.repeat, "repeat", 1, "deliveries of the same message, as a provider retries: same id and body, fresh timestamp and signature")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline for the lookup and the deliveries")
	fs.StringVar(&o.apiKey, "api-key", envOr("PROVIDER_SIM_API_KEY", auth.DevKey), "API key for the gRPC lookup (default $PROVIDER_SIM_API_KEY, else the public dev key)")
	fs.BoolVar(&o.grpcTLS, "grpc-tls", false, "look up over TLS, verified with -cacert")
	fs.StringVar(&o.tls.CAFile, "cacert", "", "PEM CA bundle to verify an https:// -url and the -grpc-tls server with (default: the system roots)")
	fs.StringVar(&o.tls.CertFile, "cert", "", "PEM client certificate for -grpc-tls (mTLS)")
	fs.StringVar(&o.tls.KeyFile, "key", "", "PEM client key for -grpc-tls (mTLS)")
	fs.StringVar(&o.tls.ServerName, "servername", "", "name to verify in the -grpc-tls server certificate, if not the host of -grpc-addr")
	fs.BoolVar(&o.tls.InsecureSkipVerify, "insecure-skip-verify", false, "accept any server certificate, for https:// and -grpc-tls")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if !o.grpcTLS && (o.tls.CertFile != "" || o.tls.KeyFile != "" || o.tls.ServerName != "") {
		return o, errors.New("-cert, -key and -servername apply to the gRPC lookup and need -grpc-tls")
	}
	if o.paymentID == "" {
		return o, errors.New("-payment-id is required")
	}
	if o.outcome != "succeeded" && o.outcome != "failed" {
		return o, fmt.Errorf("-outcome must be succeeded or failed, got %q", o.outcome)
	}
	if o.repeat < 1 {
		return o, fmt.Errorf("-repeat must be at least 1, got %d", o.repeat)
	}
	if o.eventID == "" {
		o.eventID = "msg_" + rand.Text()
	}
	return o, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if err != nil {
		return err
	}
	key, err := webhook.ParseSecret(o.secret)
	if err != nil {
		return fmt.Errorf("-secret %w", err)
	}
	// With OTEL_EXPORTER_OTLP_ENDPOINT set, the lookup and each delivery are
	// traced and carry traceparent, so the service's spans join the sim's.
	tracing, err := telemetry.Setup(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	defer func() { _ = tracing.Shutdown(context.WithoutCancel(ctx)) }()
	client, err := httpClient(o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.amount == 0 || o.currency == "" {
		if err := lookup(ctx, &o); err != nil {
			return err
		}
	}

	ev := map[string]any{
		"type":         "payment." + o.outcome,
		"payment_id":   o.paymentID,
		"occurred_at":  time.Now().UTC().Format(time.RFC3339Nano),
		"amount_minor": o.amount,
		"currency":     o.currency,
	}
	if o.outcome == "failed" {
		ev["failure_reason"] = o.reason
	}
	if o.phone != "" {
		ev["payer"] = map[string]string{"phone": o.phone}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	for range o.repeat {
		if err := deliver(ctx, client, o, key, body, out); err != nil {
			return err
		}
	}
	return nil
}

// httpClient trusts -cacert for an https:// -url. The client certificate is
// for gRPC only: the webhook is authenticated by its signature.
func httpClient(o options) (*http.Client, error) {
	u, err := url.Parse(o.url)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u.Scheme == "https" {
		cfg, err := tlsfiles.ClientConfig(tlsfiles.ClientOptions{CAFile: o.tls.CAFile, InsecureSkipVerify: o.tls.InsecureSkipVerify})
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: otelhttp.NewTransport(tr, otelhttp.WithPropagators(telemetry.Propagator()))}, nil
}

// deliver posts one signed copy of body, as a provider does on each attempt.
func deliver(ctx context.Context, client *http.Client, o options, key, body []byte, out io.Writer) error {
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderID, o.eventID)
	req.Header.Set(webhook.HeaderTimestamp, fmt.Sprint(ts))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(key, o.eventID, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	fmt.Fprintf(out, "webhook-id: %s\nHTTP %s\n%s\n", o.eventID, resp.Status, strings.TrimSpace(string(answer)))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("delivery refused with %s", resp.Status)
	}
	return nil
}

func lookup(ctx context.Context, o *options) error {
	creds := insecure.NewCredentials()
	if o.grpcTLS {
		cfg, err := tlsfiles.ClientConfig(o.tls)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(o.grpcAddr, grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithPropagators(telemetry.Propagator()))))
	if err != nil {
		return fmt.Errorf("look up payment: %w", err)
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.apiKey)
	p, err := paymentsv1.NewPaymentServiceClient(conn).GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: o.paymentID})
	if err != nil {
		return fmt.Errorf("look up payment (or pass -amount and -currency): %w", err)
	}
	if o.amount == 0 {
		o.amount = p.GetAmountMinor()
	}
	if o.currency == "" {
		o.currency = p.GetCurrency()
	}
	return nil
}
