package storage

import (
	"context"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payments-svc/payments-svc/internal/payments"
	"github.com/payments-svc/payments-svc/internal/testsupport"
)

// checkScriptSpans finds, under parent, a client span named "<command>
// <script>" with the payments.script attribute for each script, and no span
// holding the idempotency key, the metadata or any other argument.
func checkScriptSpans(t *testing.T, exp *tracetest.InMemoryExporter, parent trace.SpanContext, want map[string]string) {
	t.Helper()
	got := map[string]bool{}
	var names []string
	for _, s := range exp.GetSpans() {
		names = append(names, s.Name)
		a := testsupport.SpanAttrs(s)
		for k, v := range a {
			if strings.Contains(v, "k-traced") || strings.Contains(v, "web") || k == "db.statement" {
				t.Fatalf("span %q leaks %s=%s", s.Name, k, v)
			}
		}
		if s.Parent.SpanID() != parent.SpanID() || s.SpanContext.TraceID() != parent.TraceID() || s.SpanKind != trace.SpanKindClient {
			continue
		}
		for name, script := range want {
			if s.Name == name && a[AttrScript] == script {
				got[name] = true
			}
		}
	}
	for name := range want {
		if !got[name] {
			t.Fatalf("no client span %q with %s under the caller's span; spans: %v", name, AttrScript, names)
		}
	}
}

// TestTracingNamesScripts: under redisotel each script call is a span child
// of the caller's, named after its script: the first call's EVALSHA
// (answered NOSCRIPT) and its EVAL fallback, then the settlement's EVALSHA.
func TestTracingNamesScripts(t *testing.T) {
	t.Parallel()
	tp, exp := testsupport.NewTracer(t)
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { client.Close() })
	if err := InstrumentTracing(client, tp); err != nil {
		t.Fatal(err)
	}
	repo := New(client, testOptions)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "server")
	req := request("k-traced")
	p := payments.New(req, t0)
	if _, _, err := repo.Create(ctx, p, payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.ApplyEvent(ctx, "evt_1", "h1", settlement(p, payments.StatusSucceeded)); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	parent.End()
	checkScriptSpans(t, exp, parent.SpanContext(), map[string]string{
		"evalsha create.lua": "create.lua", "eval create.lua": "create.lua", "evalsha settle.lua": "settle.lua",
	})
	for _, s := range exp.GetSpans() {
		if s.Name == "ping" {
			if _, ok := testsupport.SpanAttrs(s)[AttrScript]; ok {
				t.Fatal("a plain command got a script name")
			}
			return
		}
	}
	t.Fatal("no ping span")
}

// TestTracingPipelineNamesScript: with replica acknowledgements the script
// and WAIT go as one pipeline, whose span carries the script name.
func TestTracingPipelineNamesScript(t *testing.T) {
	t.Parallel()
	tp, exp := testsupport.NewTracer(t)
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { client.Close() })
	if err := InstrumentTracing(client, tp); err != nil {
		t.Fatal(err)
	}
	client.AddHook(newReplicas(1, 0))
	repo := New(client, ackOptions(1, nil))
	if err := repo.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "server")
	req := request("k-traced")
	if _, _, err := repo.Create(ctx, payments.New(req, t0), payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	parent.End()
	checkScriptSpans(t, exp, parent.SpanContext(), map[string]string{"redis.pipeline evalsha wait": "create.lua"})
}

// TestTracingCluster: on a Cluster client the spans come from the node
// clients, named the same way.
func TestTracingCluster(t *testing.T) {
	t.Parallel()
	tp, exp := testsupport.NewTracer(t)
	mr := miniredis.RunT(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: []string{mr.Addr()}, MaxRetries: -1, DisableIdentity: true,
		ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
			return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: mr.Addr()}}}}, nil
		},
	})
	t.Cleanup(func() { client.Close() })
	if err := InstrumentTracing(client, tp); err != nil {
		t.Fatal(err)
	}
	repo := New(client, testOptions)
	if err := repo.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "server")
	req := request("k-traced")
	if _, _, err := repo.Create(ctx, payments.New(req, t0), payments.Fingerprint(req)); err != nil {
		t.Fatal(err)
	}
	parent.End()
	checkScriptSpans(t, exp, parent.SpanContext(), map[string]string{"evalsha create.lua": "create.lua"})
}

// TestTracingUnsupportedClient: a client redisotel cannot instrument is an
// error, not a silent gap.
func TestTracingUnsupportedClient(t *testing.T) {
	t.Parallel()
	tp, _ := testsupport.NewTracer(t)
	var c redis.UniversalClient = unsupportedClient{}
	if err := InstrumentTracing(c, tp); err == nil {
		t.Fatal("no error")
	}
}

type unsupportedClient struct{ redis.UniversalClient }
