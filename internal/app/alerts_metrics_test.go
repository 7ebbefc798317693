package app

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/payments-svc/payments-svc/internal/metrics"
	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// The chart's rules, as rendered (test/chart keeps this file equal to the chart's output), and its dashboard.
const (
	renderedRulesFile = "../../test/alerts/rules.yaml"
	dashboardFile     = "../../charts/payments/files/dashboard.json"
)

// kubeStateMetrics are the series the rules and the dashboard read from kube-state-metrics, not from the
// server: the only names allowed to be missing from its /metrics.
var kubeStateMetrics = []string{
	"kube_deployment_spec_replicas",
	"kube_deployment_status_replicas_available",
}

var (
	// PromQL pieces that hold no metric name: strings, label matchers, ranges, grouping clauses, Grafana variables.
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	grafanaVar     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlWords    = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
	}
)

// metricNames returns the metric names a PromQL expression reads.
func metricNames(expr string) []string {
	expr = promqlString.ReplaceAllString(expr, `""`)
	for promqlMatchers.MatchString(expr) {
		expr = promqlMatchers.ReplaceAllString(expr, " ")
	}
	expr = promqlRange.ReplaceAllString(expr, " ")
	expr = promqlGrouping.ReplaceAllString(expr, " ")
	expr = grafanaVar.ReplaceAllString(expr, " ")
	var names []string
	for _, m := range promqlIdent.FindAllStringIndex(expr, -1) {
		word := expr[m[0]:m[1]]
		// A digit or dot before it makes it part of a number (1e3); "(" after it makes it a function.
		if m[0] > 0 && strings.ContainsRune("0123456789.", rune(expr[m[0]-1])) {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(expr[m[1]:], " \t\n"), "(") || promqlWords[strings.ToLower(word)] {
			continue
		}
		names = append(names, word)
	}
	return names
}

// ruleExprs returns the records and the expr blocks of a rules file, read line by line: each expr is a
// literal block (expr: |) or one line.
func ruleExprs(t *testing.T, path string) (records, exprs []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	indent := func(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(l, "- record:"):
			records = append(records, strings.TrimSpace(strings.TrimPrefix(l, "- record:")))
		case l == "expr: |":
			var block []string
			base := indent(lines[i])
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || indent(lines[i+1]) > base) {
				i++
				block = append(block, lines[i])
			}
			exprs = append(exprs, strings.Join(block, "\n"))
		case strings.HasPrefix(l, "expr:"):
			exprs = append(exprs, strings.TrimPrefix(l, "expr:"))
		}
	}
	return records, exprs
}

// dashboardExprs returns every panel query of the dashboard and the metric of each label_values variable.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
			exprs = append(exprs, m[1])
		}
	}
	return exprs
}

func TestMetricNamesOfPromQL(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket{job="$job",le="0.25"}[$__rate_interval])))
		/ ignoring(grpc_code) group_left sum(rate(a:b:ratio_rate5m{x=~"y|z"}[5m] offset 1h)) > bool (14.4 * (1 - 0.999)) and on(namespace) up == 1e3`)
	want := []string{"grpc_server_handling_seconds_bucket", "a:b:ratio_rate5m", "up"}
	if !slices.Equal(got, want) {
		t.Errorf("metricNames() = %v, want %v", got, want)
	}
}

// TestAlertAndDashboardMetricsAreExported scrapes a real server after one call of each kind and checks that
// every metric the shipped alerts and dashboard read is exported, so a renamed metric breaks this test
// rather than silently silencing an alert.
func TestAlertAndDashboardMetricsAreExported(t *testing.T) {
	a, conn, _ := startApp(t, testConfig(""))
	waitFor(t, conn, healthpb.HealthCheckResponse_SERVING)
	client := paymentsv1.NewPaymentServiceClient(conn)
	ctx := context.Background()
	req := &paymentsv1.RequestPaymentRequest{AmountMinor: 500, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1"}
	created, err := client.RequestPayment(ctx, req)
	if err != nil {
		t.Fatalf("RequestPayment() error = %v", err)
	}
	if _, err := client.RequestPayment(ctx, req); err != nil {
		t.Fatalf("replay: RequestPayment() error = %v", err)
	}
	mismatch := &paymentsv1.RequestPaymentRequest{AmountMinor: 501, Currency: "EUR", OrderId: "o-1", IdempotencyKey: "k-1"}
	if _, err := client.RequestPayment(ctx, mismatch); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("key reuse: RequestPayment() = %v, want FailedPrecondition", err)
	}
	if _, err := client.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: created.GetPaymentId()}); err != nil {
		t.Fatalf("GetPayment() error = %v", err)
	}
	// An unsigned webhook delivery: refused, but counted and timed like any HTTP request.
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.HTTPAddr().String()+"/v1/webhooks/provider", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatalf("POST webhook: %v", err)
	}
	resp.Body.Close()

	code, body := get(t, a, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	exported := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		exported[l[:strings.IndexAny(l, "{ ")]] = true
	}

	records, ruleQueries := ruleExprs(t, renderedRulesFile)
	queries := slices.Concat(ruleQueries, dashboardExprs(t))
	if len(records) == 0 || len(ruleQueries) < len(records) {
		t.Fatalf("read %d records and %d exprs from %s: is it still a rules file?", len(records), len(ruleQueries), renderedRulesFile)
	}
	used := map[string]bool{}
	for _, q := range queries {
		for _, n := range metricNames(q) {
			used[n] = true
		}
	}
	// The extraction must find the service's main series, or it checks nothing.
	for _, n := range []string{"grpc_server_handled_total", "grpc_server_handling_seconds_bucket", "webhook_events_total", "kube_deployment_spec_replicas"} {
		if !used[n] {
			t.Errorf("no query reads %s: the extraction is broken (found %v)", n, used)
		}
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case slices.Contains(records, n), slices.Contains(kubeStateMetrics, n):
		case !exported[n]:
			t.Errorf("%s is read by the alerts or the dashboard but the server does not export it", n)
		}
	}
	t.Logf("checked %d metric names: %v", len(names), names)

	// The latency SLO's le must be a bucket the server really has, and each outcome a real one.
	for _, le := range regexp.MustCompile(`le="([^"]*)"`).FindAllStringSubmatch(strings.Join(ruleQueries, "\n"), -1) {
		if !strings.Contains(body, `grpc_method="RequestPayment",grpc_service="payments.v1.PaymentService",grpc_type="unary",le="`+le[1]+`"}`) {
			t.Errorf("rules use le=%q, not a bucket of grpc_server_handling_seconds for RequestPayment", le[1])
		}
	}
	for _, m := range regexp.MustCompile(`outcome=~?"([^"]*)"`).FindAllStringSubmatch(strings.Join(queries, "\n"), -1) {
		for _, o := range strings.Split(m[1], "|") {
			if !slices.Contains(metrics.WebhookOutcomes, o) {
				t.Errorf("a query matches webhook outcome %q, which the server never counts", o)
			}
		}
	}
}
