//go:build integration

package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/storage"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// Key patterns of the layout in contract.md.
const (
	paymentPattern     = "pmt:*:pay:*"
	idempotencyPattern = "pmt:*:idem:*"
)

// payReq is the request the suite sends for key: the same key always gets
// the same request, so a retry is a replay.
func payReq(key string) *paymentsv1.RequestPaymentRequest {
	return &paymentsv1.RequestPaymentRequest{
		AmountMinor:    1250,
		Currency:       "EUR",
		OrderId:        "order-" + key,
		IdempotencyKey: key,
		Metadata:       map[string]string{"suite": "integration"},
	}
}

// call is one RequestPayment with its deadline; it returns the response,
// whether the server marked it a replay, and the error.
func call(c paymentsv1.PaymentServiceClient, key string, timeout time.Duration) (*paymentsv1.RequestPaymentResponse, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var hdr metadata.MD
	resp, err := c.RequestPayment(ctx, payReq(key), grpc.Header(&hdr))
	replayed := len(hdr.Get("idempotent-replayed")) > 0 && hdr.Get("idempotent-replayed")[0] == "true"
	return resp, replayed, err
}

// scanKeys lists the keys matching pattern on every master reachable by c
// (one node for a plain client, every master for a cluster client).
func scanKeys(t *testing.T, c redis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	scan := func(ctx context.Context, n *redis.Client) error {
		it := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		return it.Err()
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		var (
			mu    sync.Mutex
			local []string
		)
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			// ForEachMaster runs concurrently; collect per node.
			it := n.Scan(ctx, 0, pattern, 1000).Iterator()
			var mine []string
			for it.Next(ctx) {
				mine = append(mine, it.Val())
			}
			mu.Lock()
			local = append(local, mine...)
			mu.Unlock()
			return it.Err()
		})
		keys = local
	case *redis.Client:
		err = scan(ctx, cc)
	default:
		t.Fatalf("scanKeys: unsupported client %T", c)
	}
	if err != nil {
		t.Fatalf("SCAN %s: %v", pattern, err)
	}
	return keys
}

// checkNoPartialRecords asserts that every idempotency record points at a
// stored payment and every payment has its idempotency record: the create
// script never leaves half of a payment behind.
func checkNoPartialRecords(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range scanKeys(t, c, idempotencyPattern) {
		rec, err := c.Get(ctx, k).Result()
		if err != nil {
			t.Errorf("idempotency record %s: GET: %v", k, err)
			continue
		}
		id, err := storage.RecordPaymentID(rec)
		if err != nil {
			t.Errorf("idempotency record %s: %v", k, err)
			continue
		}
		tag, err := payments.ParseID(id)
		if err != nil {
			t.Errorf("idempotency record %s holds payment_id %q: %v", k, id, err)
			continue
		}
		if n, err := c.Exists(ctx, storage.PaymentKey(tag, id)).Result(); err != nil || n != 1 {
			t.Errorf("idempotency record %s points at %s: EXISTS = %d, %v; want 1 (partial record)", k, id, n, err)
		}
	}
	for _, k := range scanKeys(t, c, paymentPattern) {
		f, err := c.HMGet(ctx, k, "mer", "ik").Result()
		if err != nil {
			t.Errorf("payment %s: HMGET mer ik: %v", k, err)
			continue
		}
		mer, _ := f[0].(string)
		ik, _ := f[1].(string)
		if n, err := c.Exists(ctx, storage.IdempotencyKey(mer, ik)).Result(); err != nil || n != 1 {
			t.Errorf("payment %s has no idempotency record: EXISTS = %d, %v; want 1 (partial record)", k, n, err)
		}
	}
}

// checkPaymentCount asserts exactly want payments and want idempotency
// records are stored.
func checkPaymentCount(t *testing.T, c redis.UniversalClient, want int) {
	t.Helper()
	if got := len(scanKeys(t, c, paymentPattern)); got != want {
		t.Errorf("stored payments (%s) = %d, want %d", paymentPattern, got, want)
	}
	if got := len(scanKeys(t, c, idempotencyPattern)); got != want {
		t.Errorf("stored idempotency records (%s) = %d, want %d", idempotencyPattern, got, want)
	}
}

// getPayment reads a payment with a bounded deadline.
func getPayment(c paymentsv1.PaymentServiceClient, id string) (*paymentsv1.GetPaymentResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: id})
}

// wantGet is the GetPayment response for the payment created by resp.
func wantGet(resp *paymentsv1.RequestPaymentResponse) *paymentsv1.GetPaymentResponse {
	req := payReq(resp.GetIdempotencyKey())
	return &paymentsv1.GetPaymentResponse{
		PaymentId:      resp.GetPaymentId(),
		Status:         resp.GetStatus(),
		AmountMinor:    req.GetAmountMinor(),
		Currency:       req.GetCurrency(),
		OrderId:        req.GetOrderId(),
		IdempotencyKey: req.GetIdempotencyKey(),
		CreatedAt:      resp.GetCreatedAt(),
		Message:        resp.GetMessage(),
	}
}

func keyName(prefix string, i int) string { return fmt.Sprintf("%s-%03d", prefix, i) }
