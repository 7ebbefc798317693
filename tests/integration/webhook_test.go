//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/payments-svc/payments-svc/internal/webhook"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// webhookSecret is the dev-only secret of contract.md; every replica the
// suite starts shares it, as replicas of one deployment do.
const webhookSecret = "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"

// succeededEvent is the body of a payment.succeeded event for the payment
// created by resp (the amount and currency payReq sends).
func succeededEvent(paymentID string) []byte {
	b, _ := json.Marshal(map[string]any{
		"type":         "payment.succeeded",
		"payment_id":   paymentID,
		"occurred_at":  time.Now().UTC().Format(time.RFC3339),
		"amount_minor": payReq("").GetAmountMinor(),
		"currency":     payReq("").GetCurrency(),
	})
	return b
}

// postEvent signs body as the provider does and posts it to a server's HTTP
// plane; it returns the status code and the "outcome" of the answer.
func postEvent(t *testing.T, httpAddr, id string, body []byte) (int, string) {
	t.Helper()
	return postEventWith(t, httpAddr, id, body, nil)
}

// postEventWith is postEvent with extra request headers, such as the
// X-Request-Id the tracing test follows onto the delivery's span.
func postEventWith(t *testing.T, httpAddr, id string, body []byte, header http.Header) (int, string) {
	t.Helper()
	key, err := webhook.ParseSecret(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Unix()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/webhooks/provider", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderID, id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(key, id, ts, body))
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST event %s to %s: %v", id, httpAddr, err)
		return 0, ""
	}
	defer resp.Body.Close()
	var out struct{ Outcome string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Outcome
}

// httpStatus is the status of GET path on a server's HTTP plane.
func httpStatus(httpAddr, path string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitHTTPStatus polls GET path until it answers want within timeout.
func waitHTTPStatus(t *testing.T, httpAddr, path string, want int, timeout time.Duration) {
	t.Helper()
	if err := poll(timeout, 20*time.Millisecond, func() error {
		got, err := httpStatus(httpAddr, path)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("status %d", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("GET %s: %v after %v, want %d", path, err, timeout, want)
	}
}

// TestWebhookDeliveredTwiceToTwoReplicasAppliedOnce delivers one signed event
// to two replicas at the same moment: both verify it with the shared secret,
// exactly one applies it, the other reports a duplicate, and both replicas
// then read the payment as succeeded.
func TestWebhookDeliveredTwiceToTwoReplicasAppliedOnce(t *testing.T) {
	const payments = 20
	rs := startRedis(t, redisOpts{})
	servers := startServers(t, 2, "PAYMENTS_REDIS_ADDRS="+rs.addr())
	for _, s := range servers {
		s.waitLog("redis reachable: serving")
	}
	created := createAll(t, servers[0].client(), "webhook", payments)

	for i, p := range created {
		id := fmt.Sprintf("evt_%03d", i)
		body := succeededEvent(p.GetPaymentId())
		outcomes := make([]string, len(servers))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for r, s := range servers {
			wg.Go(func() {
				<-start
				code, outcome := postEvent(t, s.http, id, body)
				if code != http.StatusOK {
					t.Errorf("event %s to replica %d: HTTP %d (%s), want 200", id, r, code, outcome)
				}
				outcomes[r] = outcome
			})
		}
		close(start)
		wg.Wait()
		got := map[string]int{}
		for _, o := range outcomes {
			got[o]++
		}
		if diff := cmp.Diff(map[string]int{"applied": 1, "duplicate": 1}, got); diff != "" {
			t.Errorf("event %s delivered to both replicas: outcomes (-want +got):\n%s", id, diff)
		}
	}
	for r, s := range servers {
		c := s.client()
		for _, p := range created {
			gp, err := getPayment(c, p.GetPaymentId())
			if err != nil || gp.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED {
				t.Errorf("GetPayment(%s) through replica %d = %v, %v; want status SUCCEEDED", p.GetPaymentId(), r, gp.GetStatus(), err)
			}
		}
	}
	if got := len(scanKeys(t, rs.client(t), "pmt:*:evt:*")); got != payments {
		t.Errorf("stored event records = %d, want %d (one per event)", got, payments)
	}
}
