package httptransport

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-cmp/cmp"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/ratelimit"
)

// contract checks exchanges with the JSON API against the served OpenAPI
// document, the one clients generate code from.
type contract struct {
	router routers.Router
	opts   *openapi3filter.Options
}

func newContract(t *testing.T) *contract {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("load the embedded document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the embedded document is invalid: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{router: router, opts: &openapi3filter.Options{
		IncludeResponseStatus: true,
		// Whether the key is right is the server's call, and the 401 cases
		// send none on purpose; the contract is about the shape.
		AuthenticationFunc: func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
	}}
}

// exchange is one request sent to the API and the reply it got.
type exchange struct {
	req   *http.Request
	body  string
	reply apiReply
}

// send makes one JSON API request and keeps it beside the reply, for
// validation against the OpenAPI document; e.do returns the reply alone.
func send(t *testing.T, e *apiEnv, c apiCall) exchange {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), c.method, e.srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	headers := c.headers
	if headers == nil {
		headers = map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + auth.DevKey}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if c.key != nil {
		req.Header.Set(IdempotencyKeyHeader, *c.key)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return exchange{req: req, body: c.body, reply: apiReply{status: resp.StatusCode, header: resp.Header, body: b}}
}

// validate returns what the document says of the request and of the
// reply. A route the document lacks is a failure of both.
func (c *contract) validate(x exchange) (reqErr, respErr error) {
	ctx := context.Background()
	route, params, err := c.router.FindRoute(x.req)
	if err != nil {
		return err, err
	}
	req := x.req.Clone(ctx)
	req.Body = io.NopCloser(strings.NewReader(x.body))
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts}
	reqErr = openapi3filter.ValidateRequest(ctx, in)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.reply.status, Header: x.reply.header, Options: c.opts}
	out.SetBodyBytes(x.reply.body)
	return reqErr, openapi3filter.ValidateResponse(ctx, out)
}

// TestAPIConformsToOpenAPI sends every answer the API can give today and
// checks each reply against the document. wantRequestValid records whether
// the document itself already rejects the request: where it is false, the
// server refuses something a generated client would not send; where it is
// true but the status is an error, only the server knows the rule.
func TestAPIConformsToOpenAPI(t *testing.T) {
	c := newContract(t)
	e := startAPI(t, apiOpts{})
	first := send(t, e, apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo(`"oa-1"`)})
	if first.reply.status != http.StatusCreated {
		t.Fatalf("create = %d %s, want 201", first.reply.status, first.reply.body)
	}
	var pay struct{ PaymentID string }
	if err := json.Unmarshal(first.reply.body, &pay); err != nil {
		t.Fatal(err)
	}
	unknownID := strings.Replace(pay.PaymentID, pay.PaymentID[4:6], "00", 1)
	post := func(body string, key *string) apiCall {
		return apiCall{method: "POST", path: "/v1/payments", body: body, key: key}
	}
	withHeaders := func(call apiCall, h map[string]string) apiCall {
		call.headers = h
		return call
	}

	tests := []struct {
		name             string
		call             apiCall
		wantStatus       int
		wantType         string   // problem type slug; "" for a success
		wantFields       []string // errors[].field of the problem
		wantRequestValid bool
		wantHeader       string // a header the reply must carry
	}{
		{"replay", post(createBody, ptrTo("oa-1")), 201, "", nil, true, ReplayedHeader},
		{"key reused with another body", post(`{"amountMinor":"999","currency":"USD","orderId":"order-7"}`, ptrTo("oa-1")), 422, "idempotency-key-reused", nil, true, ""},
		{"key missing", post(createBody, nil), 400, "idempotency-key-missing", nil, false, ""},
		{"key malformed", post(createBody, ptrTo(`"oa-2`)), 400, "idempotency-key-invalid", nil, true, ""},
		{"key conflicts with the body", post(`{"amountMinor":"1","currency":"USD","orderId":"o","idempotencyKey":"other"}`, ptrTo("oa-2")), 400, "idempotency-key-conflict", []string{"idempotency_key"}, true, ""},
		{"unknown member", post(`{"amountMinor":"1","currency":"USD","orderId":"o","extra":true}`, ptrTo("oa-2")), 400, "invalid-json", nil, false, ""},
		{"not json", post(`amount=1`, ptrTo("oa-2")), 400, "invalid-json", nil, false, ""},
		{"fields invalid to the document too", post(`{"amountMinor":"0","currency":"XTS","orderId":""}`, ptrTo("oa-2")), 400, "invalid-argument", []string{"amount_minor", "currency", "order_id"}, false, ""},
		{"fields only the server refuses", post(`{"amountMinor":"0","currency":"XTS","orderId":"o"}`, ptrTo("oa-2")), 400, "invalid-argument", []string{"amount_minor", "currency"}, true, ""},
		{"no credentials", withHeaders(post(createBody, ptrTo("oa-2")), map[string]string{"Content-Type": "application/json"}), 401, "unauthenticated", nil, true, ""},
		{"wrong content type", withHeaders(post(createBody, ptrTo("oa-2")), map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + auth.DevKey}), 415, "unsupported-media-type", nil, false, ""},
		{"body too large", post(`{"orderId":"`+strings.Repeat("x", MaxAPIBodyBytes)+`"}`, ptrTo("oa-2")), 413, "body-too-large", nil, false, ""},
		{"get", apiCall{method: "GET", path: "/v1/payments/" + pay.PaymentID}, 200, "", nil, true, ""},
		{"get a malformed id", apiCall{method: "GET", path: "/v1/payments/pay_nope"}, 400, "invalid-argument", []string{"payment_id"}, true, ""},
		{"get an unknown payment", apiCall{method: "GET", path: "/v1/payments/" + unknownID}, 404, "not-found", nil, true, ""},
		{"get another merchant's payment", apiCall{method: "GET", path: "/v1/payments/" + pay.PaymentID, headers: map[string]string{"Authorization": "Bearer " + apiKeyB}}, 404, "not-found", nil, true, ""},
		{"get with an unknown key", apiCall{method: "GET", path: "/v1/payments/" + pay.PaymentID, headers: map[string]string{"Authorization": "Bearer pk_test_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}, 401, "unauthenticated", nil, true, ""},
		{"openapi document", apiCall{method: "GET", path: OpenAPIPath, headers: map[string]string{}}, 200, "", nil, true, ""},
	}
	check := func(t *testing.T, x exchange, wantStatus int, wantType string, wantFields []string, wantRequestValid bool, wantHeader string) {
		t.Helper()
		if x.reply.status != wantStatus {
			t.Fatalf("status: got %d, want %d (body %s)", x.reply.status, wantStatus, x.reply.body)
		}
		reqErr, respErr := c.validate(x)
		if respErr != nil {
			t.Errorf("reply %d does not match the document: %v", x.reply.status, respErr)
		}
		if got := reqErr == nil; got != wantRequestValid {
			t.Errorf("request valid to the document: got %v (%v), want %v", got, reqErr, wantRequestValid)
		}
		if wantHeader != "" && x.reply.header.Get(wantHeader) == "" {
			t.Errorf("header %s: got none, want one", wantHeader)
		}
		if wantType == "" {
			return
		}
		p := problemOf(t, x.reply)
		if p.Type != ProblemBase+wantType {
			t.Errorf("problem type: got %q, want %s%s", p.Type, ProblemBase, wantType)
		}
		var fields []string
		for _, v := range p.Errors {
			fields = append(fields, v.Field)
		}
		if diff := cmp.Diff(wantFields, fields); diff != "" {
			t.Errorf("errors[].field (-want +got):\n%s", diff)
		}
	}

	t.Run("create", func(t *testing.T) {
		check(t, first, 201, "", nil, true, "Location")
		if got := first.reply.header.Get(ReplayedHeader); got != "" {
			t.Errorf("%s on the first answer: got %q, want none", ReplayedHeader, got)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, send(t, e, tt.call), tt.wantStatus, tt.wantType, tt.wantFields, tt.wantRequestValid, tt.wantHeader)
		})
	}

	t.Run("over quota", func(t *testing.T) {
		limited := startAPI(t, apiOpts{limits: &ratelimit.Config{
			Default: ratelimit.Limits{Create: &ratelimit.Limit{PerSecond: 1, Burst: 1}, Get: &ratelimit.Limit{}},
		}})
		// A still clock: the quota cannot refill between the two calls.
		limited.mr.SetTime(clock)
		check(t, send(t, limited, post(createBody, ptrTo("oa-q1"))), 201, "", nil, true, "Location")
		check(t, send(t, limited, post(createBody, ptrTo("oa-q2"))), 429, "rate-limited", nil, true, "Retry-After")
	})

	t.Run("store unavailable", func(t *testing.T) {
		down := startAPI(t, apiOpts{})
		down.mr.Close()
		check(t, send(t, down, post(createBody, ptrTo("oa-u1"))), 503, "unavailable", nil, true, "Retry-After")
		check(t, send(t, down, apiCall{method: "GET", path: "/v1/payments/" + pay.PaymentID}), 503, "unavailable", nil, true, "Retry-After")
	})
}

// TestOpenAPIServed checks that GET /openapi.json serves the embedded
// document byte for byte, as JSON, and that the document is the real one
// rather than the placeholder.
func TestOpenAPIServed(t *testing.T) {
	e := startAPI(t, apiOpts{})
	r := e.do(t, apiCall{method: "GET", path: OpenAPIPath, headers: map[string]string{}})
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: got %d, want 200", OpenAPIPath, r.status)
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", got)
	}
	if !bytes.Equal(r.body, OpenAPI()) {
		t.Errorf("served document (%d bytes) differs from the embedded one (%d bytes)", len(r.body), len(OpenAPI()))
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	paths := slices.Sorted(maps.Keys(doc.Paths))
	if want := []string{OpenAPIPath, PaymentsPath, PaymentsPath + "/{paymentId}"}; !strings.HasPrefix(doc.OpenAPI, "3.") || !slices.Equal(want, paths) {
		t.Errorf("document: got openapi %q paths %v, want 3.x and %v", doc.OpenAPI, paths, want)
	}
}

// TestOpenAPIValidatorCatchesDrift proves the contract test can fail: real
// replies, each broken in one way the server could drift, must be refused,
// while the unbroken reply passes.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	c := newContract(t)
	e := startAPI(t, apiOpts{})
	created := send(t, e, apiCall{method: "POST", path: "/v1/payments", body: createBody, key: ptrTo("drift-1")})
	missing := send(t, e, apiCall{method: "POST", path: "/v1/payments", body: createBody})
	if created.reply.status != 201 || missing.reply.status != 400 {
		t.Fatalf("setup: got %d and %d, want 201 and 400", created.reply.status, missing.reply.status)
	}
	withoutMember := func(body []byte, member string) []byte {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, member)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name    string
		x       exchange
		mutate  func(r *apiReply)
		wantErr bool
	}{
		{"created, untouched", created, func(*apiReply) {}, false},
		{"problem, untouched", missing, func(*apiReply) {}, false},
		{"created without paymentId", created, func(r *apiReply) { r.body = withoutMember(r.body, "paymentId") }, true},
		{"created with a numeric status", created, func(r *apiReply) { r.body = bytes.Replace(r.body, []byte(`"PAYMENT_STATUS_PENDING"`), []byte(`1`), 1) }, true},
		{"created without Location", created, func(r *apiReply) { r.header.Del("Location") }, true},
		{"created as 200", created, func(r *apiReply) { r.status = http.StatusOK }, true},
		{"status the document lacks", missing, func(r *apiReply) { r.status = http.StatusTeapot }, true},
		{"problem as plain JSON", missing, func(r *apiReply) { r.header.Set("Content-Type", "application/json") }, true},
		{"problem without request_id", missing, func(r *apiReply) { r.body = withoutMember(r.body, "request_id") }, true},
		{"problem without X-Request-Id", missing, func(r *apiReply) { r.header.Del(RequestIDHeader) }, true},
		{"429 without Retry-After", missing, func(r *apiReply) { r.status = http.StatusTooManyRequests }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := tt.x
			x.reply = apiReply{status: x.reply.status, header: x.reply.header.Clone(), body: bytes.Clone(x.reply.body)}
			tt.mutate(&x.reply)
			_, err := c.validate(x)
			if got := err != nil; got != tt.wantErr {
				t.Errorf("validation failed: got %v (%v), want %v", got, err, tt.wantErr)
			}
		})
	}
}
