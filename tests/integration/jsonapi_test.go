//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/payments-svc/payments-svc/internal/auth"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// apiClient is shared by the JSON API tests so that concurrent POSTs reuse
// keep-alive connections, as a real client's pool would.
var apiClient = &http.Client{Timeout: 30 * time.Second}

// apiResult is one answer of the JSON API.
type apiResult struct {
	status   int
	body     []byte
	location string
	replayed string // the Idempotent-Replayed header, "" when absent
	ctype    string
	err      error
}

// jsonBody is payReq(key) in the JSON API's protojson form without the
// key, which travels in the Idempotency-Key header: the same payload as the
// gRPC calls of the suite, so a key sent over both protocols is a replay.
func jsonBody(t *testing.T, req *paymentsv1.RequestPaymentRequest) []byte {
	t.Helper()
	req = proto.CloneOf(req)
	req.IdempotencyKey = ""
	b, err := protojson.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postPayment is POST /v1/payments with the dev key. It runs in goroutines,
// so it reports failures in its result rather than through t.
func postPayment(httpAddr, key string, body []byte) apiResult {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/payments", bytes.NewReader(body))
	if err != nil {
		return apiResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+auth.DevKey)
	req.Header.Set("Idempotency-Key", key)
	return do(req)
}

// getPaymentHTTP is GET /v1/payments/{id} with the dev key.
func getPaymentHTTP(httpAddr, id string) apiResult {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/payments/"+id, nil)
	if err != nil {
		return apiResult{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+auth.DevKey)
	return do(req)
}

func do(req *http.Request) apiResult {
	resp, err := apiClient.Do(req)
	if err != nil {
		return apiResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return apiResult{
		status:   resp.StatusCode,
		body:     body,
		location: resp.Header.Get("Location"),
		replayed: resp.Header.Get("Idempotent-Replayed"),
		ctype:    resp.Header.Get("Content-Type"),
		err:      err,
	}
}

// created checks that r is a 201 whose Location names the payment in its
// body, and returns the decoded body.
func (r apiResult) created() (*paymentsv1.RequestPaymentResponse, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.status != http.StatusCreated {
		return nil, fmt.Errorf("status %d, want 201; body %s", r.status, r.body)
	}
	var resp paymentsv1.RequestPaymentResponse
	if err := protojson.Unmarshal(r.body, &resp); err != nil {
		return nil, fmt.Errorf("body %s: %w", r.body, err)
	}
	if want := "/v1/payments/" + resp.GetPaymentId(); r.location != want {
		return nil, fmt.Errorf("Location %q, want %q", r.location, want)
	}
	return &resp, nil
}

// TestJSONAPIReplicasRaceExactlyOnce sends every key eight times at once
// over HTTP, spread over three replicas sharing one Redis: the JSON API must
// keep the gRPC guarantee, one payment per key, one creation and identical
// answers for the rest, and every replica must read every payment.
func TestJSONAPIReplicasRaceExactlyOnce(t *testing.T) {
	const (
		keys     = 30
		dups     = 8
		replicas = 3
	)
	rs := startRedis(t, redisOpts{})
	servers := startServers(t, replicas, "PAYMENTS_REDIS_ADDRS="+rs.addr())
	for _, s := range servers {
		s.waitLog("redis reachable: serving")
	}
	key := func(k int) string { return keyName("json-race", k) }

	results := make([][dups]apiResult, keys)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := range keys {
		body := jsonBody(t, payReq(key(k)))
		for d := range dups {
			wg.Go(func() {
				<-start
				results[k][d] = postPayment(servers[(k*dups+d)%replicas].http, key(k), body)
			})
		}
	}
	close(start)
	wg.Wait()

	first := make([]apiResult, keys)
	created := make([]*paymentsv1.RequestPaymentResponse, keys)
	for k := range keys {
		var creations int
		for d, r := range results[k] {
			resp, err := r.created()
			if err != nil {
				t.Errorf("key %d duplicate %d: %v", k, d, err)
				continue
			}
			switch r.replayed {
			case "":
				creations++
			case "true":
			default:
				t.Errorf("key %d duplicate %d: Idempotent-Replayed %q, want absent or \"true\"", k, d, r.replayed)
			}
			if created[k] == nil {
				first[k], created[k] = r, resp
				continue
			}
			if !bytes.Equal(r.body, first[k].body) || r.location != first[k].location {
				t.Errorf("key %d duplicate %d: Location %s body %s, want the first answer's Location %s body %s",
					k, d, r.location, r.body, first[k].location, first[k].body)
			}
		}
		if creations != 1 {
			t.Errorf("key %d: %d responses without Idempotent-Replayed, want exactly 1 creation", k, creations)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Once the race is over every replica replays, with the first answer.
	for k := range keys {
		body := jsonBody(t, payReq(key(k)))
		for i, s := range servers {
			r := postPayment(s.http, key(k), body)
			if _, err := r.created(); err != nil {
				t.Errorf("replay of key %d through replica %d: %v", k, i, err)
				continue
			}
			if r.replayed != "true" {
				t.Errorf("replay of key %d through replica %d: Idempotent-Replayed %q, want \"true\"", k, i, r.replayed)
			}
			if !bytes.Equal(r.body, first[k].body) || r.location != first[k].location {
				t.Errorf("replay of key %d through replica %d: Location %s body %s, want %s %s", k, i, r.location, r.body, first[k].location, first[k].body)
			}
		}
	}

	checkPaymentCount(t, rs.client(t), keys)
	checkNoPartialRecords(t, rs.client(t))

	for k, resp := range created {
		want := wantGet(resp)
		for i, s := range servers {
			r := getPaymentHTTP(s.http, resp.GetPaymentId())
			if r.err != nil || r.status != http.StatusOK {
				t.Errorf("GET %s through replica %d: status %d, %v, body %s; want 200", resp.GetPaymentId(), i, r.status, r.err, r.body)
				continue
			}
			var got paymentsv1.GetPaymentResponse
			if err := protojson.Unmarshal(r.body, &got); err != nil {
				t.Errorf("GET %s through replica %d: body %s: %v", resp.GetPaymentId(), i, r.body, err)
				continue
			}
			if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
				t.Errorf("key %d: GET through replica %d (-want +got):\n%s", k, i, diff)
			}
		}
	}
}

// TestJSONAPICrossProtocol creates a payment over one protocol and retries
// it over the other on the real binary: both protocols share one
// idempotency record, so the retry replays the same payment whichever
// protocol came first, and a changed payload is refused over HTTP too.
func TestJSONAPICrossProtocol(t *testing.T) {
	rs := startRedis(t, redisOpts{})
	s := startServer(t, "PAYMENTS_REDIS_ADDRS="+rs.addr())
	s.waitLog("redis reachable: serving")
	gc := s.client()

	type attempt func(t *testing.T, key string) (resp *paymentsv1.RequestPaymentResponse, replayed bool)
	overHTTP := func(t *testing.T, key string) (*paymentsv1.RequestPaymentResponse, bool) {
		t.Helper()
		r := postPayment(s.http, key, jsonBody(t, payReq(key)))
		resp, err := r.created()
		if err != nil {
			t.Fatalf("POST /v1/payments key %s: %v", key, err)
		}
		return resp, r.replayed == "true"
	}
	overGRPC := func(t *testing.T, key string) (*paymentsv1.RequestPaymentResponse, bool) {
		t.Helper()
		resp, replayed, err := call(gc, key, 10*time.Second)
		if err != nil {
			t.Fatalf("RequestPayment key %s: %v", key, err)
		}
		return resp, replayed
	}

	tests := []struct {
		name          string
		key           string
		first, second attempt
	}{
		{name: "HTTP then gRPC", key: "cross-http-first", first: overHTTP, second: overGRPC},
		{name: "gRPC then HTTP", key: "cross-grpc-first", first: overGRPC, second: overHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			original, replayed := tt.first(t, tt.key)
			if replayed {
				t.Fatalf("first call for %s: replayed, want a new payment", tt.key)
			}
			again, replayed := tt.second(t, tt.key)
			if !replayed {
				t.Errorf("retry of %s over the other protocol: not replayed, want the original replayed", tt.key)
			}
			if diff := cmp.Diff(original, again, protocmp.Transform()); diff != "" {
				t.Errorf("retry of %s over the other protocol differs (-first +retry):\n%s", tt.key, diff)
			}

			changed := payReq(tt.key)
			changed.AmountMinor++
			r := postPayment(s.http, tt.key, jsonBody(t, changed))
			if r.err != nil {
				t.Fatalf("POST with a changed payload: %v", r.err)
			}
			mt, _, _ := mime.ParseMediaType(r.ctype)
			if r.status != http.StatusUnprocessableEntity || mt != "application/problem+json" || !strings.Contains(string(r.body), "idempotency-key-reused") {
				t.Errorf("POST %s with another amount: %d %s %s, want 422 application/problem+json of type idempotency-key-reused", tt.key, r.status, r.ctype, r.body)
			}
		})
	}
	checkPaymentCount(t, rs.client(t), len(tests))
	checkNoPartialRecords(t, rs.client(t))
}
