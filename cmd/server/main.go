// Command server runs payments-svc. With no arguments it serves; the
// subcommands are `healthcheck` (a grpc.health.v1 probe for images without a
// shell), `apikey new` (a fresh API key and its keys-file line) and
// `version`. `-h` lists every environment variable.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payments-svc/payments-svc/internal/app"
	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	"github.com/payments-svc/payments-svc/internal/tlsfiles"
)

// Stamped at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "payments-svc:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUnhealthy marks a healthcheck that ran and found the server not serving.
var errUnhealthy = errors.New("unhealthy")

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return healthcheck(ctx, args[1:], stderr)
		case "apikey":
			return apikey(args[1:], stdout, stderr)
		case "version":
			_, err := fmt.Fprintf(stdout, "payments-svc %s (%s)\n", version, commit)
			return err
		case "-h", "-help", "--help", "help":
			fmt.Fprintln(stdout, "usage: payments-svc [healthcheck [flags] | apikey new -merchant ID [-env live] | version]")
			fmt.Fprintln(stdout, "\nWith no arguments it serves, configured by these environment variables:")
			fmt.Fprintln(stdout)
			if err := app.PrintUsage(stdout); err != nil {
				return err
			}
			return flag.ErrHelp
		default:
			return fmt.Errorf("unknown argument %q; see payments-svc -h", args[0])
		}
	}
	return serve(ctx, stdout, stderr)
}

func serve(ctx context.Context, stdout, stderr io.Writer) error {
	cfg, err := app.LoadConfig()
	if err != nil {
		return err
	}
	// Lines go out in batches (see telemetry.LogWriter), all of them by the
	// time serve returns.
	lw := telemetry.NewLogWriter(stdout, cfg.LogFlushInterval)
	defer lw.Close()
	// Lines written inside a traced call carry its trace_id and span_id.
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: cfg.LogLevel}))).
		With(slog.String("service", "payments-svc"), slog.String("version", version))
	if err := app.UnknownVariables(); err != nil {
		log.Warn("ignoring unknown configuration", slog.String("error", err.Error()))
	}

	if cfg.DevAuth() {
		// Printed, not logged: keys never go to logs, and this one must be
		// seen by the person who typed make run.
		fmt.Fprintf(stderr, "\n%s\n  DEVELOPMENT ONLY. Merchant %s, API key:\n\n    %s\n\n  This key is public: anyone may use it. Set PAYMENTS_AUTH_KEYS_FILE\n  for anything but a local run; production refuses to start without it.\n%s\n\n",
			banner, auth.DevMerchant, auth.DevKey, banner)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func healthcheck(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:50051", "gRPC address of the server")
	service := fs.String("service", "payments.v1.PaymentService", `grpc.health.v1 service name ("" for the whole server)`)
	timeout := fs.Duration("timeout", 2*time.Second, "deadline for the check")
	useTLS := fs.Bool("tls", false, "connect with TLS (implied by any of the flags below)")
	var to tlsfiles.ClientOptions
	fs.StringVar(&to.CAFile, "cacert", "", "PEM CA bundle to verify the server with (default: the system roots)")
	fs.StringVar(&to.CertFile, "cert", "", "PEM client certificate, for mTLS")
	fs.StringVar(&to.KeyFile, "key", "", "PEM client key, for mTLS")
	fs.StringVar(&to.ServerName, "servername", "", "name to verify in the server certificate, if not the host of -addr")
	fs.BoolVar(&to.InsecureSkipVerify, "insecure-skip-verify", false, "accept any server certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if *useTLS || to != (tlsfiles.ClientOptions{}) {
		var err error
		if tlsCfg, err = tlsfiles.ClientConfig(to); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := app.Healthcheck(ctx, *addr, *service, tlsCfg); err != nil {
		return fmt.Errorf("%w: %w", errUnhealthy, err)
	}
	return nil
}

const banner = "======================================================================"

func apikey(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "new" {
		return errors.New("usage: payments-svc apikey new -merchant ID [-env live]")
	}
	fs := flag.NewFlagSet("apikey new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	merchant := fs.String("merchant", "", "merchant id the key acts for (required; A-Z a-z 0-9 _ -, up to 64)")
	env := fs.String("env", "live", "environment named in the key: live, test, …")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if !auth.ValidMerchantID(*merchant) {
		return fmt.Errorf("-merchant %q must be 1 to 64 of A-Z a-z 0-9 _ -", *merchant)
	}
	key, err := auth.NewKey(*env)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "api key (give it to the merchant; it is not stored anywhere):\n  %s\nkeys file line (add it to PAYMENTS_AUTH_KEYS_FILE):\n  %s\n", key, auth.Line(*merchant, key))
	return err
}
