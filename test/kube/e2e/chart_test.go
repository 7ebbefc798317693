package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/internal/kubetest"

	"github.com/google/go-cmp/cmp"
)

// chartDir is the chart under test, from the repository root.
var chartDir = filepath.Join("..", "..", "..", "charts", "payments")

func values(name string) string { return filepath.Join("testdata", "values", name+".yaml") }

var kindRE = regexp.MustCompile(`(?m)^kind: *(\S+)`)

// renderedKinds lists the kinds in a rendered manifest, sorted, with repeats.
func renderedKinds(manifest string) []string {
	var kinds []string
	for _, m := range kindRE.FindAllStringSubmatch(manifest, -1) {
		kinds = append(kinds, m[1])
	}
	sort.Strings(kinds)
	return kinds
}

// helmTemplate renders the chart as the server's version would see it.
// Without --kube-version helm assumes v1.20.
func helmTemplate(t *testing.T, ns, release string, valueFiles []string, extra ...string) string {
	t.Helper()
	args := []string{"template", release, chartDir, "-n", ns, "--kube-version", serverVersion(t)}
	for _, f := range valueFiles {
		args = append(args, "-f", f)
	}
	return helm(t, append(args, extra...)...)
}

// serverDryRun sends a manifest through the API server's validation and
// admission without storing it: `helm template --validate` and
// `helm install --dry-run=server` do not do that.
func serverDryRun(t *testing.T, ns, manifest string) cmdResult {
	t.Helper()
	return runTool(t, manifest, "kubectl", "apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-")
}

// TestChartServerDryRun renders every supported values combination and has
// the API server accept it. wantKinds guards against a case that quietly
// renders less than it claims to test.
func TestChartServerDryRun(t *testing.T) {
	ns := newNamespace(t, "chart-dry-run")
	tests := []struct {
		name        string
		values      []string
		apiVersions []string
		wantKinds   []string
	}{
		{
			name:      "defaults",
			values:    []string{values("base")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
		{
			name:      "bundled redis without persistence",
			values:    []string{values("base"), values("no-persistence")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
		{
			name:      "bundled redis off, external single",
			values:    []string{values("base"), values("external-redis")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "ServiceAccount"},
		},
		{
			name:      "external redis sentinel",
			values:    []string{values("base"), values("external-sentinel")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "ServiceAccount"},
		},
		{
			name:      "external redis cluster with TLS",
			values:    []string{values("base"), values("external-cluster")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "ServiceAccount"},
		},
		{
			name:      "network policy with bundled redis",
			values:    []string{values("base"), values("networkpolicy")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
		{
			name:      "network policy with external redis",
			values:    []string{values("base"), values("networkpolicy-external-redis")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "ServiceAccount"},
		},
		{
			name:      "hpa",
			values:    []string{values("base"), values("hpa")},
			wantKinds: []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
		{
			name:      "admin port with pprof, rate limits and its own network policy rule",
			values:    []string{values("base"), values("admin")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
		{
			name:      "tls from a secret with merchant mTLS",
			values:    []string{values("base"), values("tls-secret")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Secret", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
		{
			name:      "existing secret",
			values:    []string{values("existing-secret")},
			wantKinds: []string{"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "Service", "Service", "ServiceAccount", "StatefulSet"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			for _, v := range tc.apiVersions {
				extra = append(extra, "--api-versions", v)
			}
			manifest := helmTemplate(t, ns, "payments", tc.values, extra...)
			if diff := cmp.Diff(tc.wantKinds, renderedKinds(manifest)); diff != "" {
				t.Errorf("rendered kinds (-want +got):\n%s", diff)
			}
			if r := serverDryRun(t, ns, manifest); r.err != nil {
				t.Errorf("API server refused the %s manifest:\n%v", tc.name, r)
			}
		})
	}
}

// TestChartCIValuesServerDryRun sends every values file the chart ships for
// chart-testing (charts/payments/ci/*-values.yaml) through the API server, so
// a new CI scenario is covered here without editing this file.
func TestChartCIValuesServerDryRun(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no %s/ci/*-values.yaml", chartDir)
	}
	ns := newNamespace(t, "chart-ci-values")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			manifest := helmTemplate(t, ns, "payments", []string{f})
			if r := serverDryRun(t, ns, manifest); r.err != nil {
				t.Errorf("API server refused %s:\n%v", f, r)
			}
		})
	}
}

// TestChartServiceMonitor checks the ServiceMonitor only once its CRD is
// installed, as a cluster with the Prometheus Operator would have it.
func TestChartServiceMonitor(t *testing.T) {
	ns := newNamespace(t, "chart-servicemonitor")
	valueFiles := []string{values("base"), values("servicemonitor")}

	// Without the API the chart must not render it (the apply would fail).
	if kinds := renderedKinds(helmTemplate(t, ns, "payments", valueFiles)); slices.Contains(kinds, "ServiceMonitor") {
		t.Errorf("ServiceMonitor rendered although monitoring.coreos.com/v1 is not served: kinds %v", kinds)
	}

	kubectl(t, "apply", "-f", filepath.Join("testdata", "crds", "servicemonitor.yaml"))
	t.Cleanup(func() {
		runToolContext(context.Background(), "", "kubectl", "delete", "-f", filepath.Join("testdata", "crds", "servicemonitor.yaml"), "--wait=false")
	})
	kubectl(t, "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=1m")

	manifest := helmTemplate(t, ns, "payments", valueFiles, "--api-versions", "monitoring.coreos.com/v1")
	if kinds := renderedKinds(manifest); !slices.Contains(kinds, "ServiceMonitor") {
		t.Fatalf("no ServiceMonitor rendered with monitoring.coreos.com/v1 served: kinds %v", kinds)
	}
	if r := serverDryRun(t, ns, manifest); r.err != nil {
		t.Errorf("API server refused the manifest with a ServiceMonitor:\n%v", r)
	}

	// A real install asks the server's discovery instead of --api-versions.
	helm(t, "install", "monitored", chartDir, "-n", ns, "-f", values("base"), "-f", values("no-persistence"), "-f", values("servicemonitor"))
	if got := strings.Fields(kubectl(t, "get", "servicemonitors", "-n", ns, "-l", "app.kubernetes.io/instance=monitored", "-o", "name")); len(got) != 1 {
		t.Errorf("ServiceMonitors after helm install: got %v, want one", got)
	}
	helm(t, "uninstall", "monitored", "-n", ns, "--wait")
}

// TestChartPrometheusRuleAndDashboard checks the alert rules only once the
// PrometheusRule CRD is installed, and the dashboard ConfigMap either way.
func TestChartPrometheusRuleAndDashboard(t *testing.T) {
	ns := newNamespace(t, "chart-prometheusrule")
	valueFiles := []string{values("base"), values("monitoring")}

	// Without the kind the chart must not render the rule; the dashboard is a plain ConfigMap.
	manifest := helmTemplate(t, ns, "payments", valueFiles)
	if kinds := renderedKinds(manifest); slices.Contains(kinds, "PrometheusRule") {
		t.Errorf("PrometheusRule rendered although monitoring.coreos.com/v1/PrometheusRule is not served: kinds %v", kinds)
	}
	if !strings.Contains(manifest, "name: payments-dashboard\n") {
		t.Errorf("no dashboard ConfigMap rendered with dashboard.enabled")
	}
	if r := serverDryRun(t, ns, manifest); r.err != nil {
		t.Errorf("API server refused the manifest with the dashboard ConfigMap:\n%v", r)
	}

	crd := filepath.Join("testdata", "crds", "prometheusrule.yaml")
	kubectl(t, "apply", "-f", crd)
	t.Cleanup(func() {
		runToolContext(context.Background(), "", "kubectl", "delete", "-f", crd, "--wait=false")
	})
	kubectl(t, "wait", "--for=condition=Established", "crd/prometheusrules.monitoring.coreos.com", "--timeout=1m")

	manifest = helmTemplate(t, ns, "payments", valueFiles, "--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
	if kinds := renderedKinds(manifest); !slices.Contains(kinds, "PrometheusRule") {
		t.Fatalf("no PrometheusRule rendered with monitoring.coreos.com/v1/PrometheusRule served: kinds %v", kinds)
	}
	if r := serverDryRun(t, ns, manifest); r.err != nil {
		t.Errorf("API server refused the manifest with a PrometheusRule and the dashboard:\n%v", r)
	}

	// A real install asks the server's discovery instead of --api-versions.
	helm(t, "install", "alerted", chartDir, "-n", ns, "-f", values("base"), "-f", values("no-persistence"), "-f", values("monitoring"))
	if got := strings.Fields(kubectl(t, "get", "prometheusrules", "-n", ns, "-l", "app.kubernetes.io/instance=alerted", "-o", "name")); len(got) != 1 {
		t.Errorf("PrometheusRules after helm install: got %v, want one", got)
	}
	helm(t, "uninstall", "alerted", "-n", ns, "--wait")
}

// TestChartCertificate checks tls.mode=certManager: without cert-manager's CRD
// the install is refused outright (the chart renders the Certificate anyway,
// since pods waiting forever on a Secret nobody writes would be worse); with
// the CRD the API server accepts the Certificate, and a real install creates
// it with the Secret name the pods mount.
func TestChartCertificate(t *testing.T) {
	ns := newNamespace(t, "chart-certificate")
	valueFiles := []string{values("base"), values("no-persistence"), values("tls-certmanager")}
	manifest := helmTemplate(t, ns, "payments", valueFiles)
	if kinds := renderedKinds(manifest); !slices.Contains(kinds, "Certificate") {
		t.Fatalf("no Certificate rendered with tls.mode=certManager: kinds %v", kinds)
	}
	if r := serverDryRun(t, ns, manifest); r.err == nil || !strings.Contains(r.stderr, "Certificate") {
		t.Errorf("API server without cert-manager's CRD: got %v, want the Certificate refused", r)
	}

	crd := filepath.Join("testdata", "crds", "certificate.yaml")
	kubectl(t, "apply", "-f", crd)
	t.Cleanup(func() {
		runToolContext(context.Background(), "", "kubectl", "delete", "-f", crd, "--wait=false")
	})
	kubectl(t, "wait", "--for=condition=Established", "crd/certificates.cert-manager.io", "--timeout=1m")
	if r := serverDryRun(t, ns, manifest); r.err != nil {
		t.Errorf("API server refused the manifest with a Certificate:\n%v", r)
	}

	helm(t, "install", "tls", chartDir, "-n", ns, "-f", valueFiles[0], "-f", valueFiles[1], "-f", valueFiles[2])
	got := kubectl(t, "get", "certificates", "-n", ns, "-l", "app.kubernetes.io/instance=tls", "-o",
		`jsonpath={range .items[*]}{.spec.secretName} {.spec.issuerRef.kind}/{.spec.issuerRef.name}{"\n"}{end}`)
	if strings.TrimSpace(got) != "tls-payments-tls ClusterIssuer/payments-ca" {
		t.Errorf("Certificates after helm install: %q, want one writing tls-payments-tls, issued by ClusterIssuer/payments-ca", got)
	}
	mounted := kubectl(t, "get", "deployment", "-n", ns, "tls-payments", "-o",
		`jsonpath={.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}`)
	if mounted != "tls-payments-tls" {
		t.Errorf("the pods mount TLS Secret %q, want the Certificate's tls-payments-tls", mounted)
	}
	helm(t, "uninstall", "tls", "-n", ns, "--wait")
}

// TestChartBrokenValuesRejected proves the server-side check has teeth: values
// that render and lint fine but describe an invalid object are refused, with
// a message that says what is wrong.
func TestChartBrokenValuesRejected(t *testing.T) {
	ns := newNamespace(t, "chart-broken")
	tests := []struct {
		file    string
		wantMsg string
	}{
		{file: "requests-above-limits", wantMsg: "must be less than or equal to cpu limit"},
		{file: "invalid-annotation-key", wantMsg: `spec.template.annotations: Invalid value: "payments.example.test/owner team": name part must consist of alphanumeric characters`},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			manifest := helmTemplate(t, ns, "payments", []string{values("base"), filepath.Join("testdata", "broken", tc.file+".yaml")})
			r := serverDryRun(t, ns, manifest)
			if r.err == nil {
				t.Fatalf("API server accepted %s:\n%v", tc.file, r)
			}
			if !strings.Contains(r.stderr, tc.wantMsg) {
				t.Errorf("API server error: got %q, want it to contain %q", r.stderr, tc.wantMsg)
			}
		})
	}
}

// TestChartLifecycle installs the chart for real and walks it through what an
// operator does: install, test, a config change, a scale, uninstall. The steps
// share one release, so they are sequential subtests that stop at the first
// failure.
func TestChartLifecycle(t *testing.T) {
	ns := newNamespace(t, "chart-lifecycle")
	const release = "pay"
	server := "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=server"
	redis := "app.kubernetes.io/instance=" + release + ",app.kubernetes.io/component=redis"
	var deployment, service string

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("install --wait becomes ready", func(t *testing.T) {
		helm(t, "install", release, chartDir, "-n", ns, "-f", values("base"), "-f", values("no-persistence"), "--wait", "--timeout", "3m")
		deployment = onlyName(t, ns, "deployment", server)
		service = onlyName(t, ns, "service", server)
		kubectl(t, "wait", "-n", ns, "--for=condition=Available", "deployment/"+deployment, "--timeout=1m")
		assertPodsRunningOnNode(t, ns, server, 2)
		assertPodsRunningOnNode(t, ns, redis, 1)
		assertEndpoints(t, ns, service, 2)
	})

	step("pod disruption budget has computed status", func(t *testing.T) {
		assertPDBComputed(t, ns, onlyName(t, ns, "pdb", server), 2)
	})

	step("helm test job completes", func(t *testing.T) {
		out := helm(t, "test", release, "-n", ns, "--timeout", "2m")
		if !strings.Contains(out, "Succeeded") {
			t.Errorf("helm test output does not report success:\n%s", out)
		}
		// Hooks are not part of the release: uninstall would never delete a
		// test Job that its delete policy kept.
		kubetest.Eventually(t, time.Minute, "passed test Job deleted", func() error {
			if left := kubectl(t, "get", "jobs,pods", "-n", ns, "-l", "app.kubernetes.io/instance="+release+",app.kubernetes.io/component=test", "-o", "name"); left != "" {
				return fmt.Errorf("still there: %s", left)
			}
			return nil
		})
	})

	step("config change rolls a new ReplicaSet", func(t *testing.T) {
		before := rollout(t, ns, deployment)
		helm(t, "upgrade", release, chartDir, "-n", ns, "--reuse-values", "--set", "config.logLevel=debug", "--wait", "--timeout", "3m")
		after := waitRolledOut(t, ns, deployment)
		if after.checksum == before.checksum {
			t.Errorf("checksum/config annotation did not move: %q", after.checksum)
		}
		if after.templateHash == before.templateHash {
			t.Errorf("no new ReplicaSet: pod-template-hash still %q", after.templateHash)
		}
		if got, want := len(after.replicaSets), len(before.replicaSets)+1; got != want {
			t.Errorf("ReplicaSets: got %d %v, want %d", got, after.replicaSets, want)
		}
		assertPodsRunningOnNode(t, ns, server, 2)
	})

	step("replica change alone does not roll", func(t *testing.T) {
		before := rollout(t, ns, deployment)
		helm(t, "upgrade", release, chartDir, "-n", ns, "--reuse-values", "--set", "replicaCount=3", "--wait", "--timeout", "3m")
		after := waitRolledOut(t, ns, deployment)
		if diff := cmp.Diff(before.replicaSets, after.replicaSets); diff != "" {
			t.Errorf("ReplicaSets changed on a replica-only upgrade (-before +after):\n%s", diff)
		}
		if after.checksum != before.checksum || after.templateHash != before.templateHash {
			t.Errorf("pod template changed on a replica-only upgrade: checksum %q -> %q, hash %q -> %q",
				before.checksum, after.checksum, before.templateHash, after.templateHash)
		}
		assertPodsRunningOnNode(t, ns, server, 3)
		assertEndpoints(t, ns, service, 3)
	})

	step("api key rotation does not roll", func(t *testing.T) {
		// The server re-reads the mounted keys file: a new key must reach the
		// Secret and leave the pod template, and so the pods, alone.
		const rotated = "m_dev sha256:9ff8bb6f750e537e462b0a718586c4a31cc400c75fdf988103e68d6a1a69db87"
		before := rollout(t, ns, deployment)
		helm(t, "upgrade", release, chartDir, "-n", ns, "--reuse-values", "--set-json", `auth.keys=["`+rotated+`"]`, "--wait", "--timeout", "3m")
		after := waitRolledOut(t, ns, deployment)
		if diff := cmp.Diff(before, after, cmp.AllowUnexported(rolloutState{})); diff != "" {
			t.Errorf("a key rotation rolled the Deployment (-before +after):\n%s", diff)
		}
		got := kubectl(t, "get", "secret", "-n", ns, release+"-payments-api-keys", "-o", "jsonpath={.data.api-keys}")
		if want := base64.StdEncoding.EncodeToString([]byte(rotated + "\n")); got != want {
			t.Errorf("keys Secret after the rotation = %q, want %q", got, want)
		}
	})

	step("uninstall --wait leaves nothing behind", func(t *testing.T) {
		helm(t, "uninstall", release, "-n", ns, "--wait", "--timeout", "2m")
		kinds := "deployments,replicasets,statefulsets,pods,services,endpointslices,configmaps,secrets," +
			"serviceaccounts,poddisruptionbudgets,horizontalpodautoscalers,networkpolicies,jobs,persistentvolumeclaims"
		kubetest.Eventually(t, 2*time.Minute, "release objects gone", func() error {
			left := strings.Fields(kubectl(t, "get", kinds, "-n", ns, "-l", "app.kubernetes.io/instance="+release, "-o", "name"))
			// Pods and ReplicaSets are garbage-collected through owner references,
			// whatever labels they carry; helm's release records are Secrets.
			left = append(left, strings.Fields(kubectl(t, "get", "pods,replicasets", "-n", ns, "-o", "name"))...)
			left = append(left, strings.Fields(kubectl(t, "get", "secrets", "-n", ns, "-l", "owner=helm,name="+release, "-o", "name"))...)
			if len(left) > 0 {
				return fmt.Errorf("still there: %v", left)
			}
			return nil
		})
		if out := helm(t, "list", "-n", ns, "--all", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("helm list after uninstall: %q, want empty", out)
		}
	})
}

// onlyName returns the name of the single object of kind matching selector.
func onlyName(t *testing.T, ns, kind, selector string) string {
	t.Helper()
	names := strings.Fields(kubectl(t, "get", kind, "-n", ns, "-l", selector, "-o", "jsonpath={.items[*].metadata.name}"))
	if len(names) != 1 {
		t.Fatalf("%s with %s: got %v, want exactly one", kind, selector, names)
	}
	return names[0]
}

// rolloutState is what identifies a Deployment's pod template revision.
type rolloutState struct {
	checksum     string   // the chart's checksum/config pod annotation
	templateHash string   // pod-template-hash of the newest ReplicaSet
	replicaSets  []string // names of the Deployment's ReplicaSets, sorted
}

func rollout(t *testing.T, ns, deployment string) rolloutState {
	t.Helper()
	var d struct {
		Metadata struct {
			UID         string
			Annotations map[string]string
		}
		Spec struct {
			Template struct {
				Metadata struct{ Annotations map[string]string }
			}
		}
	}
	if err := json.Unmarshal([]byte(kubectl(t, "get", "deployment", "-n", ns, deployment, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	var rsList struct {
		Items []struct {
			Metadata struct {
				Name            string
				Labels          map[string]string
				Annotations     map[string]string
				OwnerReferences []struct{ UID string } `json:"ownerReferences"`
			}
		}
	}
	if err := json.Unmarshal([]byte(kubectl(t, "get", "replicasets", "-n", ns, "-o", "json")), &rsList); err != nil {
		t.Fatal(err)
	}
	s := rolloutState{checksum: d.Spec.Template.Metadata.Annotations["checksum/config"]}
	if s.checksum == "" {
		t.Fatalf("deployment %s has no checksum/config pod annotation", deployment)
	}
	revision := d.Metadata.Annotations["deployment.kubernetes.io/revision"]
	for _, rs := range rsList.Items {
		owned := slices.ContainsFunc(rs.Metadata.OwnerReferences, func(o struct{ UID string }) bool { return o.UID == d.Metadata.UID })
		if !owned {
			continue
		}
		s.replicaSets = append(s.replicaSets, rs.Metadata.Name)
		if rs.Metadata.Annotations["deployment.kubernetes.io/revision"] == revision {
			s.templateHash = rs.Metadata.Labels["pod-template-hash"]
		}
	}
	sort.Strings(s.replicaSets)
	return s
}

// waitRolledOut waits for the Deployment controller to finish the rollout of
// the current template, then returns its state.
func waitRolledOut(t *testing.T, ns, deployment string) rolloutState {
	t.Helper()
	kubectl(t, "rollout", "status", "-n", ns, "deployment/"+deployment, "--timeout=2m")
	return rollout(t, ns, deployment)
}
