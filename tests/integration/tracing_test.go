//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/payments-svc/payments-svc/internal/auth"
	"github.com/payments-svc/payments-svc/internal/proctest"
)

// jaegerBinEnv names the Jaeger v2 binary TestTracingJaeger runs, by an
// absolute path (go test runs in this directory); `make test-tracing` builds
// it with test/tools/build.sh and sets it. Without it
// the test skips, so `make test-integration` needs no Jaeger.
const jaegerBinEnv = "JAEGER_BIN"

// jaeger is one Jaeger v2 process: an OTLP gRPC receiver feeding memory
// storage, and the query API on top of it, all on 127.0.0.1.
type jaeger struct {
	*proctest.Proc
	otlp  string // OTLP gRPC receiver address
	query string // HTTP query API address
}

// jaegerConfig is the collector-style configuration of Jaeger v2, shaped
// after cmd/jaeger/internal/all-in-one.yaml of the pinned module with only
// what the test needs: no sampling, health check, zipkin or jaeger
// receivers (each would bind a fixed port), internal metrics off (they
// would serve on :8888), and logs as JSON on stdout so proctest can wait on
// them.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
      encoding: json
      output_paths: [stdout]
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 1000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// startJaeger writes the configuration with ports picked now and starts the
// binary, waiting for the collector's ready line. freePort's port may be
// taken before Jaeger binds it; the process then exits, and the start is
// retried on fresh ports.
func startJaeger(t *testing.T, bin string) *jaeger {
	t.Helper()
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		j := &jaeger{
			otlp:  "127.0.0.1:" + strconv.Itoa(freePort(t)),
			query: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		}
		queryGRPC := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cfg := filepath.Join(dir, fmt.Sprintf("jaeger-%d.yaml", attempt))
		if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, j.query, queryGRPC, j.otlp), 0o600); err != nil {
			t.Fatal(err)
		}
		// proctest kills it by its PID when the test ends (and the kernel
		// does, through Pdeathsig, if the test binary dies first). SIGKILL,
		// not SIGTERM: its memory storage holds nothing to save, and after any
		// query v2.13.0 spends 10 s of its shutdown dialing localhost:4317
		// for telemetry of its own, whatever its telemetry settings say.
		j.Proc = proctest.Start(t, bin, os.Environ(), "--config", cfg)
		if ready, why := j.waitReady(); ready {
			return j
		} else if attempt == 3 || !strings.Contains(why, "address already in use") {
			t.Fatalf("jaeger did not start: %s\nstderr:\n%s\nlog:\n%s", why, j.Stderr(), j.LogTail(20))
		}
	}
}

// waitReady waits for the collector's "Everything is ready" line, or the
// process's exit; on exit it returns the log and stderr text for the caller
// to tell a port clash from a real failure.
func (j *jaeger) waitReady() (bool, string) {
	const ready = "Everything is ready. Begin running and processing data."
	err := poll(readyTimeout, 20*time.Millisecond, func() error {
		if j.Exited() {
			return nil
		}
		if j.Logged(ready) {
			return nil
		}
		return fmt.Errorf("no %q log line", ready)
	})
	if err == nil && !j.Exited() {
		return true, ""
	}
	if err != nil {
		return false, err.Error()
	}
	return false, j.LogTail(20) + j.Stderr()
}

// jaegerTrace is one trace of Jaeger's HTTP query API (/api/traces), the
// JSON its UI reads.
type jaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []jaegerSpan `json:"spans"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s jaegerSpan) tag(key string) string {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// parent is the span's CHILD_OF parent id, "" for a root.
func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// traces asks Jaeger for the service's traces within [since, now+1m].
func (j *jaeger) traces(service string, since time.Time) ([]jaegerTrace, error) {
	q := url.Values{
		"service": {service},
		"limit":   {"100"},
		"start":   {strconv.FormatInt(since.UnixMicro(), 10)},
		"end":     {strconv.FormatInt(time.Now().Add(time.Minute).UnixMicro(), 10)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+j.query+"/api/traces?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/traces: HTTP %d", resp.StatusCode)
	}
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// TestTracingJaeger runs the real server against a real Jaeger v2 and reads
// the spans back through Jaeger's query API: a gRPC create and its replay, a
// JSON API create, and a signed webhook settling the first payment. It
// proves the OTLP export end to end (the flush at SIGTERM included) and the
// tree and attributes the unit tests check against an in-memory exporter.
func TestTracingJaeger(t *testing.T) {
	bin := os.Getenv(jaegerBinEnv)
	if bin == "" {
		t.Skipf("%s is unset: run `make test-tracing`, which builds Jaeger v2 and sets it", jaegerBinEnv)
	}
	since := time.Now().Add(-time.Minute)
	j := startJaeger(t, bin)

	rs := startRedis(t, redisOpts{})
	s := startServer(t,
		"PAYMENTS_REDIS_ADDRS="+rs.addr(),
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+j.otlp,
		"OTEL_TRACES_SAMPLER=always_on",
		// Blank whatever the outer environment says, so the spans go to
		// this Jaeger over gRPC under the default service name.
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=",
		"OTEL_EXPORTER_OTLP_PROTOCOL=",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=",
		"OTEL_SERVICE_NAME=",
		"OTEL_RESOURCE_ATTRIBUTES=",
		"OTEL_SDK_DISABLED=",
	)
	s.waitLog("tracing enabled")
	s.waitLog("redis reachable: serving")

	// gRPC: a create and its replay.
	c := s.client()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "trace-grpc-1"), 10*time.Second)
	defer cancel()
	first, err := c.RequestPayment(ctx, payReq("trace-grpc-1"))
	if err != nil {
		t.Fatal(err)
	}
	replay, err := c.RequestPayment(ctx, payReq("trace-grpc-1"))
	if err != nil {
		t.Fatal(err)
	}
	if replay.GetPaymentId() != first.GetPaymentId() {
		t.Fatalf("replay answered %s, want %s", replay.GetPaymentId(), first.GetPaymentId())
	}

	// JSON API: one create.
	api := postPayment(s.http, "trace-json-1", []byte(`{"amountMinor":"1234","currency":"USD","orderId":"o-1"}`))
	viaAPI, err := api.created()
	if err != nil {
		t.Fatalf("POST /v1/payments: %v", err)
	}

	// Webhook: settle the gRPC payment, with a request id to find its span by.
	const webhookRequestID = "trace-webhook-req-1"
	code, outcome := postEventWith(t, s.http, "evt_trace_1", succeededEvent(first.GetPaymentId()),
		http.Header{"X-Request-Id": {webhookRequestID}})
	if code != http.StatusOK || outcome != "applied" {
		t.Fatalf("webhook: HTTP %d outcome %q, want 200 applied", code, outcome)
	}

	// SIGTERM: the server flushes its batched spans before it exits.
	stopped := time.Now()
	s.Signal(syscall.SIGTERM)
	if err := s.Wait(readyTimeout); err != nil {
		t.Fatalf("server after SIGTERM: %s", proctest.ExitStatus(err))
	}
	t.Logf("server exited %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	exited := time.Now()

	// The spans reach storage shortly after the export; poll until every
	// span the assertions need is there.
	var spans []jaegerSpan
	var webhookSpan jaegerSpan
	err = poll(readyTimeout, 100*time.Millisecond, func() error {
		traces, err := j.traces("payments-svc", since)
		if err != nil {
			return err
		}
		spans = spans[:0]
		for _, tr := range traces {
			spans = append(spans, tr.Spans...)
		}
		var creates, evals int
		webhookSpan = jaegerSpan{}
		for _, sp := range spans {
			switch sp.OperationName {
			case "payments.v1.PaymentService/RequestPayment":
				if sp.tag("span.kind") == "server" {
					creates++
				}
			case "evalsha create.lua":
				evals++
			}
			if sp.tag("payments.request_id") == webhookRequestID {
				webhookSpan = sp
			}
		}
		if creates < 3 || evals < 2 || webhookSpan.SpanID == "" {
			return fmt.Errorf("%d spans so far: %d RequestPayment server spans (want 3), %d create.lua spans (want 2), webhook span found %v",
				len(spans), creates, evals, webhookSpan.SpanID != "")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("spans in Jaeger: %v", err)
	}
	t.Logf("spans readable in Jaeger %v after the server exited", time.Since(exited).Round(time.Millisecond))

	byID := map[string]jaegerSpan{}
	for _, sp := range spans {
		byID[sp.TraceID+"/"+sp.SpanID] = sp
	}
	// serverSpan is the one RequestPayment server span with the payment id
	// and idempotency outcome.
	serverSpan := func(paymentID, outcome string) jaegerSpan {
		t.Helper()
		var found []jaegerSpan
		for _, sp := range spans {
			if sp.OperationName == "payments.v1.PaymentService/RequestPayment" && sp.tag("span.kind") == "server" &&
				sp.tag("payments.payment_id") == paymentID && sp.tag("payments.idempotency.outcome") == outcome {
				found = append(found, sp)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d RequestPayment server spans with payment %s and outcome %s", len(found), paymentID, outcome)
		}
		if m := found[0].tag("payments.merchant_id"); m != "m_dev" {
			t.Fatalf("RequestPayment span merchant %q, want m_dev", m)
		}
		return found[0]
	}
	hasChild := func(parent jaegerSpan, name string) bool {
		for _, sp := range spans {
			if sp.TraceID == parent.TraceID && sp.parent() == parent.SpanID && sp.OperationName == name {
				return true
			}
		}
		return false
	}

	created := serverSpan(first.GetPaymentId(), "created")
	if !hasChild(created, "evalsha create.lua") {
		t.Fatalf("the created RequestPayment span %s has no evalsha create.lua child", created.SpanID)
	}
	if rid := created.tag("payments.request_id"); rid != "trace-grpc-1" {
		t.Fatalf("RequestPayment span request id %q, want trace-grpc-1", rid)
	}
	replayed := serverSpan(first.GetPaymentId(), "replayed")
	if replayed.TraceID == created.TraceID {
		t.Fatalf("the replay shares the create's trace %s: each call is its own root", created.TraceID)
	}

	// The JSON API call is one trace across both planes: HTTP server span,
	// the gateway's gRPC client span, then the gRPC server span.
	apiServer := serverSpan(viaAPI.GetPaymentId(), "created")
	if !hasChild(apiServer, "evalsha create.lua") {
		t.Fatalf("the JSON API's RequestPayment span has no evalsha create.lua child")
	}
	gwClient, ok := byID[apiServer.TraceID+"/"+apiServer.parent()]
	if !ok || gwClient.tag("span.kind") != "client" {
		t.Fatalf("the JSON API's RequestPayment server span has parent %v, want the gateway's client span", gwClient)
	}
	httpSpan, ok := byID[gwClient.TraceID+"/"+gwClient.parent()]
	if !ok || httpSpan.OperationName != "POST /v1/payments" || httpSpan.tag("span.kind") != "server" {
		t.Fatalf("the gateway's client span has parent %q (%s), want the POST /v1/payments server span", httpSpan.OperationName, httpSpan.tag("span.kind"))
	}

	// The webhook's HTTP span.
	if webhookSpan.OperationName != "POST /v1/webhooks/provider" || webhookSpan.tag("span.kind") != "server" {
		t.Fatalf("webhook span %q kind %q", webhookSpan.OperationName, webhookSpan.tag("span.kind"))
	}
	if o := webhookSpan.tag("payments.webhook.outcome"); o != "applied" {
		t.Fatalf("webhook span outcome %q, want applied", o)
	}
	if p := webhookSpan.tag("payments.payment_id"); p != first.GetPaymentId() {
		t.Fatalf("webhook span payment id %q, want %s", p, first.GetPaymentId())
	}

	// No attribute holds a credential: the API key sent on every call, the
	// webhook secret.
	for _, sp := range spans {
		for _, kv := range sp.Tags {
			v := fmt.Sprint(kv.Value)
			for _, secret := range []string{auth.DevKey, webhookSecret} {
				if strings.Contains(v, secret) || strings.Contains(kv.Key, secret) {
					t.Fatalf("span %q attribute %s holds a credential", sp.OperationName, kv.Key)
				}
			}
		}
	}
	t.Logf("%d spans of payments-svc read back from Jaeger", len(spans))
}
