package chart

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "../../charts/payments"
	releaseName = "pay"
	namespace   = "payments"
	fullname    = "pay-payments"
)

// devKeyLine is the keys-file line of the public dev key pk_dev_yd6gdxgynqzqdeqmhvropepl65uclxmc.
const devKeyLine = "m_dev sha256:4a287e489de7e3a9b4ca1cfe7807e4223fa930ada828c01acb2c45a5a2862deb"

// baseValues are the smallest values a real install needs: the chart refuses to render without secrets,
// and production without API keys.
const baseValues = `
secrets:
  webhookSecrets: ["whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"]
  redisPassword: test-redis-password
auth:
  keys: ["` + devKeyLine + `"]
`

// serviceMonitor is the part of the Prometheus Operator type the chart renders; decoding into it strictly
// catches typos there too, without importing the operator's module.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the Prometheus Operator's PrometheusRule (monitoring.coreos.com/v1): its spec is a
// Prometheus rules file. Strict decoding catches a misspelt rule field before promtool or the operator does.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Record      string            `json:"record"`
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// certificate is the part of cert-manager's Certificate (cert-manager.io/v1) the chart renders, decoded
// strictly for the same reason.
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		DNSNames    []string `json:"dnsNames"`
		Usages      []string `json:"usages"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// rendered is a decoded release: every object, indexed by kind and name.
type rendered struct {
	objects map[string]any // "Kind/name" -> typed object
	sources map[string]string
}

func (r rendered) keys() []string {
	var ks []string
	for k := range r.objects {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (r rendered) count(kind string) int {
	n := 0
	for k := range r.objects {
		if strings.HasPrefix(k, kind+"/") {
			n++
		}
	}
	return n
}

func get[T any](t *testing.T, r rendered, kind, name string) T {
	t.Helper()
	o, ok := r.objects[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s/%s rendered; got %v", kind, name, r.keys())
	}
	typed, ok := o.(T)
	if !ok {
		t.Fatalf("%s/%s is %T", kind, name, o)
	}
	return typed
}

type renderOpts struct {
	// extraAPIVersions are added to the fake cluster's discovery, e.g. "monitoring.coreos.com/v1".
	extraAPIVersions []string
	// release is the release name; empty means releaseName.
	release string
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	dir, err := filepath.Abs(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("loader.Load(%s): %v", dir, err)
	}
	return c
}

// renderRaw renders the chart like `helm template --kube-version 1.34.0`, validating values against
// values.schema.json, and returns the manifests by template path (NOTES.txt and partials excluded).
func renderRaw(t *testing.T, valuesYAML []string, o renderOpts) (map[string]string, error) {
	t.Helper()
	out, err := renderAll(t, valuesYAML, o)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for name, body := range out {
		if strings.HasSuffix(name, "NOTES.txt") || strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		files[name] = body
	}
	return files, nil
}

// notes renders NOTES.txt, what helm install prints, with baseValues and values.
func notes(t *testing.T, values ...string) string {
	t.Helper()
	out, err := renderAll(t, append([]string{baseValues}, values...), renderOpts{})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	n, ok := out["payments/templates/NOTES.txt"]
	if !ok {
		t.Fatal("no NOTES.txt rendered")
	}
	return n
}

// renderAll renders every template, NOTES.txt included, keyed by path.
func renderAll(t *testing.T, valuesYAML []string, o renderOpts) (map[string]string, error) {
	t.Helper()
	c := loadChart(t)
	vals := map[string]any{}
	for _, v := range valuesYAML {
		m, err := chartutil.ReadValues([]byte(v))
		if err != nil {
			t.Fatalf("parsing test values %q: %v", v, err)
		}
		vals = chartutil.CoalesceTables(m, vals)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.34.0", Major: "1", Minor: "34"}
	caps.APIVersions = append(caps.APIVersions, o.extraAPIVersions...)
	release := releaseName
	if o.release != "" {
		release = o.release
	}
	top, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	if !chartutil.IsCompatibleRange(c.Metadata.KubeVersion, caps.KubeVersion.String()) {
		t.Fatalf("chart kubeVersion %q excludes %s", c.Metadata.KubeVersion, caps.KubeVersion)
	}
	// Strict: a template that reads a value missing from values.yaml is an error, not an empty string.
	return engine.Engine{Strict: true}.Render(c, top)
}

// render renders and strictly decodes every object; any render or decode error fails the test.
func render(t *testing.T, o renderOpts, valuesYAML ...string) rendered {
	t.Helper()
	files, err := renderRaw(t, append([]string{baseValues}, valuesYAML...), o)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r, err := decodeAll(files)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// decodeAll splits every manifest into documents and decodes each into its k8s.io/api type. Unknown
// fields, duplicate keys and unknown kinds are errors, so a misspelt field cannot slip through.
func decodeAll(files map[string]string) (rendered, error) {
	r := rendered{objects: map[string]any{}, sources: map[string]string{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				return r, fmt.Errorf("%s: %v", name, err)
			}
			obj, err := newObject(tm)
			if err != nil {
				return r, fmt.Errorf("%s: %v", name, err)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				return r, fmt.Errorf("%s: strict decode of %s: %v", name, tm.Kind, err)
			}
			meta, err := objectName(obj)
			if err != nil {
				return r, fmt.Errorf("%s: %v", name, err)
			}
			key := tm.Kind + "/" + meta
			if _, dup := r.objects[key]; dup {
				return r, fmt.Errorf("%s rendered twice", key)
			}
			r.objects[key] = obj
			r.sources[key] = name
		}
	}
	return r, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteString("\n")
		}
	}
	return b.String()
}

func newObject(tm metav1.TypeMeta) (any, error) {
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "batch/v1 Job":
		return &batchv1.Job{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRule{}, nil
	case "cert-manager.io/v1 Certificate":
		return &certificate{}, nil
	}
	return nil, fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
}

func objectName(obj any) (string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", fmt.Errorf("%T has no ObjectMeta", obj)
	}
	if m.GetName() == "" {
		return "", fmt.Errorf("%T without a name", obj)
	}
	if m.GetNamespace() != namespace {
		return "", fmt.Errorf("%T %s in namespace %q, want %q", obj, m.GetName(), m.GetNamespace(), namespace)
	}
	return m.GetName(), nil
}

// podSpecs returns every pod template the release would run, by owner.
func podSpecs(r rendered) map[string]corev1.PodSpec {
	out := map[string]corev1.PodSpec{}
	for k, o := range r.objects {
		switch w := o.(type) {
		case *appsv1.Deployment:
			out[k] = w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			out[k] = w.Spec.Template.Spec
		case *batchv1.Job:
			out[k] = w.Spec.Template.Spec
		}
	}
	return out
}
