// Command noop is the gRPC floor for the benchmarks: payments.v1.PaymentService
// with empty handlers and no interceptors, logging or storage, so the same
// load on it measures what gRPC and the load generator cost by themselves.
// It logs one JSON line with its bound address, like the real server.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

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
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	paymentsv1.RegisterPaymentServiceServer(srv, noop{})
	line, _ := json.Marshal(map[string]string{"msg": "grpc server listening", "addr": lis.Addr().String()})
	fmt.Println(string(line))
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	return srv.Serve(lis)
}
