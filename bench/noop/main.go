// Command noop is the gRPC floor for the benchmarks: payments.v1.PaymentService
// with empty handlers and no interceptors, logging or storage, so the same
// load on it measures what gRPC and the load generator cost by themselves.
// Its HTTP port answers every POST with 204 after reading the body, the floor
// for the webhook. It logs its bound addresses as JSON lines, like the real
// server.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

type noop struct {
	paymentsv1.UnimplementedPaymentServiceServer
}

func (noop) RequestPayment(context.Context, *paymentsv1.RequestPaymentRequest) (*paymentsv1.RequestPaymentResponse, error) {
	return &paymentsv1.RequestPaymentResponse{}, nil
}

func (noop) GetPayment(context.Context, *paymentsv1.GetPaymentRequest) (*paymentsv1.GetPaymentResponse, error) {
	return &paymentsv1.GetPaymentResponse{}, nil
}

func (noop) Health(context.Context, *paymentsv1.HealthRequest) (*paymentsv1.HealthResponse, error) {
	return &paymentsv1.HealthResponse{}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "gRPC listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:0", "HTTP listen address")
	flag.Parse()
	if err := run(*addr, *httpAddr); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

func run(addr, httpAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	hlis, err := lc.Listen(ctx, "tcp", httpAddr)
	if err != nil {
		return err
	}
	hsrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = hsrv.Serve(hlis) }()
	srv := grpc.NewServer()
	paymentsv1.RegisterPaymentServiceServer(srv, noop{})
	// The gRPC line comes last: readers take it to mean both are bound.
	for _, l := range [][2]string{{"http server listening", hlis.Addr().String()}, {"grpc server listening", lis.Addr().String()}} {
		line, _ := json.Marshal(map[string]string{"msg": l[0], "addr": l[1]})
		fmt.Println(string(line))
	}
	go func() {
		<-ctx.Done()
		_ = hsrv.Close()
		srv.Stop()
	}()
	return srv.Serve(lis)
}
