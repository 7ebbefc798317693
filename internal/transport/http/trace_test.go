package httptransport

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/storage"
	"github.com/payments-svc/payments-svc/internal/telemetry"
	"github.com/payments-svc/payments-svc/internal/testsupport"
)

// spanNamed returns the only span with the name, or fails.
func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q among %v", len(found), name, names)
	}
	return found[0]
}

// logLine returns the access log line with the request id.
func logLine(t *testing.T, logs string, rid string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "http" && m["request_id"] == rid {
			return m
		}
	}
	t.Fatalf("no access line with request id %s in %s", rid, logs)
	return nil
}

// TestTraceWebhookSpan: a delivery is a server span named by method and
// route, with the webhook outcome, the webhook id, the payment id and the
// request id; its access line carries the span's ids, and its latency
// carries the trace id as an exemplar on the OpenMetrics exposition.
func TestTraceWebhookSpan(t *testing.T) {
	t.Parallel()
	tp, exp := testsupport.NewTracer(t)
	e := startTraced(t, storage.Options{IdempotencyTTL: time.Hour}, tp)
	id := e.payment(t)

	r := e.send(t, delivery{id: "msg_traced", body: event("payment.succeeded", id, "")})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("delivery = %d %s", r.StatusCode, r.Body)
	}
	bad := e.send(t, delivery{id: "msg_forged", key: keyOther, body: event("payment.succeeded", id, "")})
	if bad.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged delivery = %d", bad.StatusCode)
	}

	spans := exp.GetSpans()
	var ok, forged tracetest.SpanStub
	for _, s := range spans {
		switch testsupport.SpanAttrs(s)[telemetry.AttrRequestID] {
		case r.Header.Get(RequestIDHeader):
			ok = s
		case bad.Header.Get(RequestIDHeader):
			forged = s
		}
	}
	if ok.Name != "POST "+WebhookPath || ok.SpanKind != trace.SpanKindServer {
		t.Fatalf("webhook span %q kind %v among %v", ok.Name, ok.SpanKind, spans.Snapshots())
	}
	a := testsupport.SpanAttrs(ok)
	if a[telemetry.AttrWebhookOutcome] != "applied" || a[telemetry.AttrPaymentID] != id || a[telemetry.AttrWebhookID] != "msg_traced" {
		t.Fatalf("webhook span attributes %v", a)
	}
	if fa := testsupport.SpanAttrs(forged); fa[telemetry.AttrWebhookOutcome] != "invalid_signature" || fa[telemetry.AttrWebhookID] != "" || fa[telemetry.AttrPaymentID] != "" {
		t.Fatalf("forged delivery attributes %v", fa)
	}
	for _, s := range spans {
		for k, v := range testsupport.SpanAttrs(s) {
			if strings.Contains(strings.ToLower(k), "signature") || strings.Contains(v, "v1,") {
				t.Fatalf("span %q carries the signature: %s=%s", s.Name, k, v)
			}
		}
	}

	e.logMu.Lock()
	line := logLine(t, e.logs.String(), r.Header.Get(RequestIDHeader))
	e.logMu.Unlock()
	if line["trace_id"] != ok.SpanContext.TraceID().String() || line["span_id"] != ok.SpanContext.SpanID().String() {
		t.Fatalf("access line %v, want the span's ids", line)
	}

	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, e.admin.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := e.admin.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	want := `# {trace_id="` + ok.SpanContext.TraceID().String() + `"}`
	found := false
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "http_request_duration_seconds_bucket{") && strings.Contains(l, `route="`+WebhookPath+`"`) && strings.Contains(l, want) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no exemplar %s on the webhook latency", want)
	}
}

// TestTraceRouteNames: span names are the access log's routes, so a path
// never becomes a name.
func TestTraceRouteNames(t *testing.T) {
	t.Parallel()
	tp, exp := testsupport.NewTracer(t)
	e := startTraced(t, storage.Options{IdempotencyTTL: time.Hour}, tp)
	for _, path := range []string{"/wp-login.php", "/v1/webhooks/provider/x"} {
		resp, err := e.srv.Client().Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, s := range exp.GetSpans() {
		if s.Name != "GET unmatched" {
			t.Fatalf("span name %q", s.Name)
		}
	}
	if n := len(exp.GetSpans()); n != 2 {
		t.Fatalf("%d spans", n)
	}
}

// TestTraceAPIContinuesIntoGRPC: a JSON API call continues the caller's
// traceparent as an HTTP server span, whose child is the gateway's gRPC
// client span, whose child is the gRPC server span with the payment's
// attributes: one trace across both planes.
func TestTraceAPIContinuesIntoGRPC(t *testing.T) {
	t.Parallel()
	tp, exp := testsupport.NewTracer(t)
	e := startAPI(t, apiOpts{tp: tp})
	const parentTrace, parentSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	r := e.do(t, apiCall{method: "POST", path: PaymentsPath, body: createBody, key: ptrTo("k-traced-api"), headers: map[string]string{
		"Content-Type": "application/json", "Authorization": "Bearer " + auth.DevKey,
		"traceparent": "00-" + parentTrace + "-" + parentSpan + "-01", RequestIDHeader: "rid-traced-api",
	}})
	if r.status != http.StatusCreated {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	// The gRPC server span ends after its status has gone out, so it may be
	// exported after the HTTP answer arrived: wait for all three.
	var spans tracetest.SpanStubs
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans = exp.GetSpans()
		n := 0
		for _, s := range spans {
			if s.Name == "payments.v1.PaymentService/RequestPayment" || s.Name == "POST "+PaymentsPath {
				n++
			}
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans never complete: %v", spans.Snapshots())
		}
		runtime.Gosched()
	}
	httpSpan := spanNamed(t, spans, "POST "+PaymentsPath)
	// Both gRPC spans share the method's name; their kinds tell them apart.
	var client, server tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "payments.v1.PaymentService/RequestPayment" {
			switch s.SpanKind {
			case trace.SpanKindClient:
				client = s
			case trace.SpanKindServer:
				server = s
			}
		}
	}
	for name, s := range map[string]tracetest.SpanStub{"http": httpSpan, "client": client, "server": server} {
		if s.SpanContext.TraceID().String() != parentTrace {
			t.Fatalf("%s span trace %s, want %s", name, s.SpanContext.TraceID(), parentTrace)
		}
	}
	if httpSpan.Parent.SpanID().String() != parentSpan || !httpSpan.Parent.IsRemote() {
		t.Fatalf("http span parent %s", httpSpan.Parent.SpanID())
	}
	if client.Parent.SpanID() != httpSpan.SpanContext.SpanID() || server.Parent.SpanID() != client.SpanContext.SpanID() {
		t.Fatalf("chain: client parent %s (http %s), server parent %s (client %s)",
			client.Parent.SpanID(), httpSpan.SpanContext.SpanID(), server.Parent.SpanID(), client.SpanContext.SpanID())
	}
	ha, sa := testsupport.SpanAttrs(httpSpan), testsupport.SpanAttrs(server)
	if ha[telemetry.AttrRequestID] != "rid-traced-api" || ha[telemetry.AttrPaymentID] == "" {
		t.Fatalf("http span attributes %v", ha)
	}
	if sa[telemetry.AttrRequestID] != "rid-traced-api" || sa[telemetry.AttrIdempotency] != "created" ||
		sa[telemetry.AttrPaymentID] != ha[telemetry.AttrPaymentID] || sa[telemetry.AttrMerchantID] != auth.DevMerchant {
		t.Fatalf("grpc server span attributes %v", sa)
	}
	for _, s := range spans {
		for k, v := range testsupport.SpanAttrs(s) {
			if strings.Contains(v, auth.DevKey) || strings.Contains(v, "k-traced-api") || strings.Contains(strings.ToLower(k), "authorization") {
				t.Fatalf("span %q leaks %s=%s", s.Name, k, v)
			}
		}
	}
}
