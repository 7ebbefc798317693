package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, name)
	return 0
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("pod has no volume %q", name)
	return corev1.Volume{}
}

func mount(c corev1.Container, name string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.Name == name {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func TestDefaultsProbesTargetGRPCPort(t *testing.T) {
	r := render(t, renderOpts{})
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	c := d.Spec.Template.Spec.Containers[0]
	grpc := containerPort(t, c, "grpc")

	probes := []struct {
		name        string
		probe       *corev1.Probe
		wantService string
	}{
		{"startup", c.StartupProbe, "liveness"},
		{"liveness", c.LivenessProbe, "liveness"},
		{"readiness", c.ReadinessProbe, "payments.v1.PaymentService"},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			if p.probe == nil || p.probe.GRPC == nil {
				t.Fatalf("%s probe = %+v, want a native gRPC probe", p.name, p.probe)
			}
			if got := p.probe.GRPC.Port; got != grpc {
				t.Errorf("%s probe port = %d, want the grpc container port %d", p.name, got, grpc)
			}
			got := ""
			if p.probe.GRPC.Service != nil {
				got = *p.probe.GRPC.Service
			}
			if got != p.wantService {
				t.Errorf("%s probe service = %q, want %q", p.name, got, p.wantService)
			}
		})
	}
}

func TestDefaultsEveryPodIsHardened(t *testing.T) {
	r := render(t, renderOpts{})
	pods := podSpecs(r)
	for _, want := range []string{"Deployment/" + fullname, "StatefulSet/" + fullname + "-redis", "Job/" + fullname + "-test"} {
		if _, ok := pods[want]; !ok {
			t.Fatalf("no pod template for %s; got %v", want, r.keys())
		}
	}
	for owner, spec := range pods {
		t.Run(owner, func(t *testing.T) {
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("pod runAsNonRoot not set: %+v", psc)
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.RunAsGroup == nil || *psc.RunAsGroup == 0 {
				t.Errorf("pod runAsUser/runAsGroup must be non-zero: %+v", psc)
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod seccompProfile = %+v, want RuntimeDefault", psc)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("automountServiceAccountToken = %v, want false", spec.AutomountServiceAccountToken)
			}
			if spec.ServiceAccountName != fullname {
				t.Errorf("serviceAccountName = %q, want %q", spec.ServiceAccountName, fullname)
			}
			for _, c := range append(spec.InitContainers, spec.Containers...) {
				sc := c.SecurityContext
				if sc == nil {
					t.Fatalf("container %s has no securityContext", c.Name)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("container %s readOnlyRootFilesystem not true", c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("container %s allowPrivilegeEscalation not false", c.Name)
				}
				if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
					t.Errorf("container %s runAsNonRoot not true", c.Name)
				}
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
					t.Errorf("container %s capabilities = %+v, want drop [ALL] and nothing added", c.Name, sc.Capabilities)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if q, ok := c.Resources.Requests[res]; !ok || q.IsZero() {
						t.Errorf("container %s has no %s request", c.Name, res)
					}
					if q, ok := c.Resources.Limits[res]; !ok || q.IsZero() {
						t.Errorf("container %s has no %s limit", c.Name, res)
					}
				}
				if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
					t.Errorf("container %s image %q is not pinned to a tag", c.Name, c.Image)
				}
			}
		})
	}
}

func TestDefaultsServerPod(t *testing.T) {
	r := render(t, renderOpts{})
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	cm := get[*corev1.ConfigMap](t, r, "ConfigMap", fullname)

	t.Run("grace outlasts preStop plus shutdown timeout", func(t *testing.T) {
		shutdown, err := time.ParseDuration(cm.Data["PAYMENTS_SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Fatalf("PAYMENTS_SHUTDOWN_TIMEOUT: %v", err)
		}
		preStop := time.Duration(0)
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		if grace <= shutdown+preStop {
			t.Errorf("terminationGracePeriodSeconds %v <= shutdown %v + preStop %v", grace, shutdown, preStop)
		}
	})
	t.Run("production settings", func(t *testing.T) {
		want := map[string]string{
			"PAYMENTS_ENVIRONMENT": "production",
			"PAYMENTS_GRPC_ADDR":   ":50051",
			"PAYMENTS_HTTP_ADDR":   ":8080",
			"PAYMENTS_ADMIN_ADDR":  ":9090",
			"PAYMENTS_PPROF":       "false",
			"PAYMENTS_TLS_MESH":    "true",
			"PAYMENTS_REDIS_ADDRS": fullname + "-redis:6379",
			"PAYMENTS_REDIS_MODE":  "single",
		}
		for k, v := range want {
			if got := cm.Data[k]; got != v {
				t.Errorf("ConfigMap %s = %q, want %q", k, got, v)
			}
		}
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != fullname {
			t.Errorf("envFrom = %+v, want the ConfigMap %s", c.EnvFrom, fullname)
		}
		if _, ok := cm.Data["PAYMENTS_RATE_LIMITS"]; ok {
			t.Error("PAYMENTS_RATE_LIMITS set without rateLimits values, want the server's defaults")
		}
		if got := containerPort(t, c, "admin"); got != 9090 {
			t.Errorf("admin container port = %d, want 9090", got)
		}
	})
	t.Run("secrets come from the Secret", func(t *testing.T) {
		sec := get[*corev1.Secret](t, r, "Secret", fullname)
		for _, tc := range []struct{ env, key, want string }{
			{"PAYMENTS_WEBHOOK_SECRETS", "webhook-secrets", "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtY2hhbmdlLW1l"},
			{"PAYMENTS_REDIS_PASSWORD", "redis-password", "test-redis-password"},
		} {
			e, ok := envVar(c, tc.env)
			if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Errorf("env %s = %+v, want a secretKeyRef", tc.env, e)
				continue
			}
			if ref := e.ValueFrom.SecretKeyRef; ref.Name != fullname || ref.Key != tc.key {
				t.Errorf("env %s refers to %s/%s, want %s/%s", tc.env, ref.Name, ref.Key, fullname, tc.key)
			}
			if got := string(sec.Data[tc.key]); got != tc.want {
				t.Errorf("Secret key %s = %q, want %q", tc.key, got, tc.want)
			}
			if _, inCM := cm.Data[tc.env]; inCM {
				t.Errorf("%s must not be in the ConfigMap", tc.env)
			}
		}
	})
	t.Run("spread and rollout", func(t *testing.T) {
		if len(spec.TopologySpreadConstraints) == 0 {
			t.Error("no topologySpreadConstraints")
		}
		for _, tsc := range spec.TopologySpreadConstraints {
			if diff := cmp.Diff(d.Spec.Selector.MatchLabels, tsc.LabelSelector.MatchLabels); diff != "" {
				t.Errorf("spread %s selects other pods (-deployment +spread):\n%s", tsc.TopologyKey, diff)
			}
		}
		aa := spec.Affinity
		if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Fatalf("affinity = %+v, want one preferred pod anti-affinity term", aa)
		}
		term := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
		if diff := cmp.Diff(d.Spec.Selector.MatchLabels, term.LabelSelector.MatchLabels); term.TopologyKey != "kubernetes.io/hostname" || diff != "" {
			t.Errorf("anti-affinity on %q selects other pods (-deployment +term):\n%s", term.TopologyKey, diff)
		}
		if d.Spec.Template.Annotations["checksum/config"] == "" {
			t.Error("no checksum/config annotation")
		}
		if got := *d.Spec.Replicas; got != 2 {
			t.Errorf("replicas = %d, want 2", got)
		}
	})
	t.Run("service ports", func(t *testing.T) {
		svc := get[*corev1.Service](t, r, "Service", fullname)
		got := map[string]string{}
		for _, p := range svc.Spec.Ports {
			ap := ""
			if p.AppProtocol != nil {
				ap = *p.AppProtocol
			}
			got[p.Name] = p.TargetPort.String() + "/" + ap
		}
		want := map[string]string{"grpc": "grpc/grpc", "http": "http/http"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("service ports (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(d.Spec.Selector.MatchLabels, svc.Spec.Selector); diff != "" {
			t.Errorf("service selector differs from the deployment's (-deployment +service):\n%s", diff)
		}
	})
	t.Run("admin service", func(t *testing.T) {
		admin := get[*corev1.Service](t, r, "Service", fullname+"-admin")
		if admin.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("admin Service type = %q, want ClusterIP", admin.Spec.Type)
		}
		if len(admin.Spec.Ports) != 1 || admin.Spec.Ports[0].Name != "admin" || admin.Spec.Ports[0].Port != 9090 ||
			admin.Spec.Ports[0].TargetPort.String() != "admin" {
			t.Errorf("admin Service ports = %+v, want only admin 9090 -> admin", admin.Spec.Ports)
		}
		if diff := cmp.Diff(d.Spec.Selector.MatchLabels, admin.Spec.Selector); diff != "" {
			t.Errorf("admin Service selector differs from the deployment's (-deployment +service):\n%s", diff)
		}
	})
	t.Run("service account and PDB", func(t *testing.T) {
		sa := get[*corev1.ServiceAccount](t, r, "ServiceAccount", fullname)
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Error("ServiceAccount automountServiceAccountToken is not false")
		}
		pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", fullname)
		if pdb.Spec.UnhealthyPodEvictionPolicy == nil || *pdb.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
			t.Errorf("unhealthyPodEvictionPolicy = %v, want AlwaysAllow", pdb.Spec.UnhealthyPodEvictionPolicy)
		}
		if diff := cmp.Diff(d.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels); diff != "" {
			t.Errorf("PDB selector differs (-deployment +pdb):\n%s", diff)
		}
	})
	t.Run("helm test job", func(t *testing.T) {
		job := get[*batchv1.Job](t, r, "Job", fullname+"-test")
		if got := job.Annotations["helm.sh/hook"]; got != "test" {
			t.Errorf("hook = %q, want test", got)
		}
		jc := job.Spec.Template.Spec.Containers[0]
		want := []string{"healthcheck", "-addr", fullname + ":50051", "-service", "payments.v1.PaymentService", "-timeout", "5s"}
		if diff := cmp.Diff(want, jc.Args); diff != "" {
			t.Errorf("test args (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"/payments-svc"}, jc.Command); diff != "" {
			t.Errorf("test command (-want +got):\n%s", diff)
		}
		if jc.Image != c.Image {
			t.Errorf("test image %q, want the server image %q", jc.Image, c.Image)
		}
		if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("restartPolicy = %q, want Never", job.Spec.Template.Spec.RestartPolicy)
		}
	})
}

func TestChecksumFollowsConfigAndSecret(t *testing.T) {
	checksum := func(t *testing.T, values ...string) string {
		t.Helper()
		d := get[*appsv1.Deployment](t, render(t, renderOpts{}, values...), "Deployment", fullname)
		return d.Spec.Template.Annotations["checksum/config"]
	}
	base := checksum(t)
	tests := []struct {
		name        string
		values      string
		wantChanged bool
	}{
		{"log level", "config: {logLevel: debug}", true},
		{"shutdown timeout", "config: {shutdownTimeoutSeconds: 10}", true},
		{"webhook secret rotated", `secrets: {webhookSecrets: ["whsec_bmV3LXNlY3JldA=="]}`, true},
		{"redis password", "secrets: {redisPassword: other}", true},
		{"replica acks", `{redis: {enabled: false}, externalRedis: {addrs: ["r:6379"]}, config: {redis: {minReplicaAcks: 1}}}`, true},
		{"connection lifetime", "config: {redis: {connMaxLifetime: 10s}}", true},
		{"pprof", "config: {pprof: true}", true},
		{"rate limits", "rateLimits: {default: {create: {perSecond: 5, burst: 10}}}", true},
		{"replica count only", "replicaCount: 3", false},
		{"pod annotation only", "podAnnotations: {team: payments}", false},
		// Keys and certificates are reloaded by the server: rotating them must not restart pods.
		{"api key added", `auth: {keys: ["` + devKeyLine + `", "m_shop sha256:` + strings.Repeat("ab", 32) + `"]}`, false},
		{"tls secret name", "tls: {mode: secret, secretName: payments-tls-v2}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checksum(t, tt.values)
			if changed := got != base; changed != tt.wantChanged {
				t.Errorf("checksum changed = %v, want %v (base %s, got %s)", changed, tt.wantChanged, base, got)
			}
		})
	}
}

func TestExternalRedis(t *testing.T) {
	tests := []struct {
		name    string
		values  string
		wantCM  map[string]string
		wantEnv []string
	}{
		{
			name:    "single with password",
			values:  `{redis: {enabled: false}, externalRedis: {addrs: ["redis.prod.svc:6379"]}}`,
			wantCM:  map[string]string{"PAYMENTS_REDIS_ADDRS": "redis.prod.svc:6379", "PAYMENTS_REDIS_MODE": "single", "PAYMENTS_REDIS_TLS": "false"},
			wantEnv: []string{"PAYMENTS_WEBHOOK_SECRETS", "PAYMENTS_REDIS_PASSWORD"},
		},
		{
			name: "sentinel over TLS",
			values: `{redis: {enabled: false}, secrets: {redisPassword: "", redisSentinelPassword: s},
				externalRedis: {addrs: ["s1:26379", "s2:26379"], mode: sentinel, masterName: mymaster,
				tls: {enabled: true, serverName: redis.example, caSecret: redis-ca}}}`,
			wantCM: map[string]string{
				"PAYMENTS_REDIS_ADDRS": "s1:26379,s2:26379", "PAYMENTS_REDIS_MODE": "sentinel",
				"PAYMENTS_REDIS_MASTER_NAME": "mymaster", "PAYMENTS_REDIS_TLS": "true",
				"PAYMENTS_REDIS_TLS_SERVER_NAME": "redis.example", "PAYMENTS_REDIS_TLS_CA_FILE": "/etc/payments/redis-ca/ca.crt",
			},
			wantEnv: []string{"PAYMENTS_WEBHOOK_SECRETS", "PAYMENTS_REDIS_SENTINEL_PASSWORD"},
		},
		{
			name:    "cluster without password",
			values:  `{redis: {enabled: false}, secrets: {redisPassword: ""}, externalRedis: {addrs: ["n1:7000", "n2:7001"], mode: cluster, username: app}}`,
			wantCM:  map[string]string{"PAYMENTS_REDIS_ADDRS": "n1:7000,n2:7001", "PAYMENTS_REDIS_MODE": "cluster", "PAYMENTS_REDIS_USERNAME": "app"},
			wantEnv: []string{"PAYMENTS_WEBHOOK_SECRETS"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, renderOpts{}, tt.values)
			for k, o := range r.objects {
				if strings.Contains(k, "redis") {
					t.Errorf("redis.enabled=false still renders %s (%T)", k, o)
				}
			}
			if n := r.count("StatefulSet"); n != 0 {
				t.Errorf("%d StatefulSets rendered, want 0", n)
			}
			cm := get[*corev1.ConfigMap](t, r, "ConfigMap", fullname)
			for k, v := range tt.wantCM {
				if got := cm.Data[k]; got != v {
					t.Errorf("ConfigMap %s = %q, want %q", k, got, v)
				}
			}
			c := get[*appsv1.Deployment](t, r, "Deployment", fullname).Spec.Template.Spec.Containers[0]
			var gotEnv []string
			for _, e := range c.Env {
				gotEnv = append(gotEnv, e.Name)
			}
			if diff := cmp.Diff(tt.wantEnv, gotEnv); diff != "" {
				t.Errorf("secret env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExistingSecret(t *testing.T) {
	r := render(t, renderOpts{}, `{secrets: {existingSecret: ops-managed, webhookSecrets: [], redisPassword: ""},
		auth: {keys: [], existingSecret: ops-managed-keys, secretKey: keys.txt}}`)
	if n := r.count("Secret"); n != 0 {
		t.Errorf("%d Secrets rendered with existingSecret, want 0", n)
	}
	for owner, spec := range podSpecs(r) {
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != "ops-managed" {
					t.Errorf("%s container %s env %s reads Secret %q, want ops-managed", owner, c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	spec := get[*appsv1.Deployment](t, r, "Deployment", fullname).Spec.Template.Spec
	if v := volume(t, spec, "api-keys"); v.Secret == nil || v.Secret.SecretName != "ops-managed-keys" {
		t.Errorf("api-keys volume = %+v, want the Secret ops-managed-keys", v)
	}
	if got := get[*corev1.ConfigMap](t, r, "ConfigMap", fullname).Data["PAYMENTS_AUTH_KEYS_FILE"]; got != "/etc/payments/auth/keys.txt" {
		t.Errorf("PAYMENTS_AUTH_KEYS_FILE = %q, want /etc/payments/auth/keys.txt", got)
	}
}

func TestOptionalObjects(t *testing.T) {
	tests := []struct {
		name       string
		values     string
		apis       []string
		wantCounts map[string]int
	}{
		{"defaults", "", nil, map[string]int{"HorizontalPodAutoscaler": 0, "NetworkPolicy": 0, "ServiceMonitor": 0, "PodDisruptionBudget": 1}},
		{"hpa", "autoscaling: {enabled: true}", nil, map[string]int{"HorizontalPodAutoscaler": 1}},
		{"network policy with bundled redis", "networkPolicy: {enabled: true}", nil, map[string]int{"NetworkPolicy": 2}},
		{"network policy with external redis", `{networkPolicy: {enabled: true}, redis: {enabled: false}, externalRedis: {addrs: ["r:6380"]}}`, nil, map[string]int{"NetworkPolicy": 1}},
		{"service monitor without the CRD", "serviceMonitor: {enabled: true}", nil, map[string]int{"ServiceMonitor": 0}},
		{"service monitor with the CRD", "serviceMonitor: {enabled: true}", []string{"monitoring.coreos.com/v1"}, map[string]int{"ServiceMonitor": 1}},
		{"service monitor disabled with the CRD", "", []string{"monitoring.coreos.com/v1"}, map[string]int{"ServiceMonitor": 0}},
		{"prometheus rule without the CRD", "prometheusRule: {enabled: true}", []string{"monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"}, map[string]int{"PrometheusRule": 0}},
		{"prometheus rule with the CRD", "prometheusRule: {enabled: true}", []string{prometheusRuleAPI}, map[string]int{"PrometheusRule": 1}},
		{"prometheus rule disabled with the CRD", "", []string{prometheusRuleAPI}, map[string]int{"PrometheusRule": 0}},
		{"dashboard off by default", "", nil, map[string]int{"ConfigMap": 1}},
		{"dashboard", "dashboard: {enabled: true}", nil, map[string]int{"ConfigMap": 2}},
		{"pdb off", "podDisruptionBudget: {enabled: false}", nil, map[string]int{"PodDisruptionBudget": 0}},
		{"tests off", "tests: {enabled: false}", nil, map[string]int{"Job": 0}},
		{"no redis persistence", "redis: {persistence: {enabled: false}}", nil, map[string]int{"StatefulSet": 1}},
		{"admin service always", "", nil, map[string]int{"Service": 3}},
		{"certificate only with cert-manager mode", "", nil, map[string]int{"Certificate": 0}},
		{"certificate", "tls: {mode: certManager, certManager: {issuerRef: {name: ca}}}", nil, map[string]int{"Certificate": 1}},
		{"no keys secret in development without keys", "{config: {environment: development}, auth: {keys: []}}", nil, map[string]int{"Secret": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, renderOpts{extraAPIVersions: tt.apis}, tt.values)
			for kind, want := range tt.wantCounts {
				if got := r.count(kind); got != want {
					t.Errorf("%d %s rendered, want %d", got, kind, want)
				}
			}
		})
	}
}

func TestHPAOwnsReplicas(t *testing.T) {
	r := render(t, renderOpts{}, "autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 7}")
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	if d.Spec.Replicas != nil {
		t.Errorf("deployment replicas = %d with an HPA, want unset", *d.Spec.Replicas)
	}
	hpa := get[*autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler", fullname)
	if hpa.Spec.ScaleTargetRef.Name != fullname || hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
		t.Errorf("HPA targets %+v", hpa.Spec.ScaleTargetRef)
	}
	if *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 7 {
		t.Errorf("HPA min/max = %d/%d, want 3/7", *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
}

func TestServiceMonitorScrapesAdmin(t *testing.T) {
	r := render(t, renderOpts{extraAPIVersions: []string{"monitoring.coreos.com/v1"}}, "serviceMonitor: {enabled: true}")
	sm := get[*serviceMonitor](t, r, "ServiceMonitor", fullname)
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("endpoints = %+v, want port admin path /metrics", sm.Spec.Endpoints)
	}
	selects := func(svc *corev1.Service) bool {
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				return false
			}
		}
		return true
	}
	// Exactly the admin Service: the public one has no admin port, and matching both would scrape twice.
	if admin := get[*corev1.Service](t, r, "Service", fullname+"-admin"); !selects(admin) {
		t.Errorf("ServiceMonitor selector %v does not match the admin Service's labels %v", sm.Spec.Selector.MatchLabels, admin.Labels)
	}
	if public := get[*corev1.Service](t, r, "Service", fullname); selects(public) {
		t.Errorf("ServiceMonitor selector %v matches the public Service too", sm.Spec.Selector.MatchLabels)
	}
	for _, p := range get[*corev1.Service](t, r, "Service", fullname).Spec.Ports {
		if p.Name == "admin" || p.TargetPort.String() == "admin" {
			t.Errorf("public Service exposes the admin port: %+v", p)
		}
	}
}

func TestAdminServiceStaysInsideTheCluster(t *testing.T) {
	r := render(t, renderOpts{}, "service: {type: LoadBalancer}")
	if got := get[*corev1.Service](t, r, "Service", fullname).Spec.Type; got != corev1.ServiceTypeLoadBalancer {
		t.Errorf("public Service type = %q, want LoadBalancer", got)
	}
	if got := get[*corev1.Service](t, r, "Service", fullname+"-admin").Spec.Type; got != corev1.ServiceTypeClusterIP {
		t.Errorf("admin Service type = %q with a LoadBalancer public Service, want ClusterIP", got)
	}
}

func TestNetworkPolicy(t *testing.T) {
	type rule struct {
		ports []string
		peers int
	}
	summarize := func(ports []networkingv1.NetworkPolicyPort) []string {
		var out []string
		for _, p := range ports {
			out = append(out, string(*p.Protocol)+"/"+p.Port.String())
		}
		return out
	}
	tests := []struct {
		name        string
		values      string
		wantIngress []rule
		wantEgress  []rule
		// wantAdminFrom, when set, is the whole peer list of the admin port's rule.
		wantAdminFrom []networkingv1.NetworkPolicyPeer
	}{
		{
			name:        "bundled redis",
			values:      "networkPolicy: {enabled: true}",
			wantIngress: []rule{{ports: []string{"TCP/grpc", "TCP/http"}, peers: 0}, {ports: []string{"TCP/admin"}, peers: 1}},
			wantEgress:  []rule{{ports: []string{"UDP/53", "TCP/53"}, peers: 1}, {ports: []string{"TCP/6379"}, peers: 1}},
			wantAdminFrom: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}},
		},
		{
			name: "admin port from a custom scraper",
			values: `networkPolicy: {enabled: true, adminFrom: [{namespaceSelector: {matchLabels: {team: observability}},
				podSelector: {matchLabels: {app: vmagent}}}]}`,
			wantIngress: []rule{{ports: []string{"TCP/grpc", "TCP/http"}, peers: 0}, {ports: []string{"TCP/admin"}, peers: 1}},
			wantEgress:  []rule{{ports: []string{"UDP/53", "TCP/53"}, peers: 1}, {ports: []string{"TCP/6379"}, peers: 1}},
			wantAdminFrom: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "observability"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "vmagent"}}}},
		},
		{
			name: "external sentinels with restricted clients",
			values: `{networkPolicy: {enabled: true, ingressFrom: [{namespaceSelector: {matchLabels: {team: shop}}}],
				externalRedisEgressTo: [{ipBlock: {cidr: 192.0.2.0/24}}], externalRedisPorts: [26379, 6379]},
				redis: {enabled: false}, externalRedis: {addrs: ["s1:26379"], mode: sentinel, masterName: m}}`,
			wantIngress: []rule{{ports: []string{"TCP/grpc", "TCP/http"}, peers: 2}, {ports: []string{"TCP/admin"}, peers: 1}},
			wantEgress:  []rule{{ports: []string{"UDP/53", "TCP/53"}, peers: 1}, {ports: []string{"TCP/26379", "TCP/6379"}, peers: 1}},
		},
		{
			name:        "tracing collector on the endpoint's port",
			values:      `{networkPolicy: {enabled: true, tracingEgressTo: [{namespaceSelector: {matchLabels: {team: observability}}}]}, tracing: {endpoint: "http://otel-collector.observability:4317"}}`,
			wantIngress: []rule{{ports: []string{"TCP/grpc", "TCP/http"}, peers: 0}, {ports: []string{"TCP/admin"}, peers: 1}},
			wantEgress:  []rule{{ports: []string{"UDP/53", "TCP/53"}, peers: 1}, {ports: []string{"TCP/6379"}, peers: 1}, {ports: []string{"TCP/4317"}, peers: 1}},
		},
		{
			name:        "external ports derived from addrs, admin port closed",
			values:      `{networkPolicy: {enabled: true, adminFrom: []}, redis: {enabled: false}, externalRedis: {addrs: ["a:7000", "b:7000", "c:7001"], mode: cluster}}`,
			wantIngress: []rule{{ports: []string{"TCP/grpc", "TCP/http"}, peers: 0}},
			wantEgress:  []rule{{ports: []string{"UDP/53", "TCP/53"}, peers: 1}, {ports: []string{"TCP/7000", "TCP/7001"}, peers: 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, renderOpts{}, tt.values)
			np := get[*networkingv1.NetworkPolicy](t, r, "NetworkPolicy", fullname)
			d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
			if diff := cmp.Diff(d.Spec.Selector.MatchLabels, np.Spec.PodSelector.MatchLabels); diff != "" {
				t.Errorf("policy selects other pods (-deployment +policy):\n%s", diff)
			}
			if diff := cmp.Diff([]networkingv1.PolicyType{"Ingress", "Egress"}, np.Spec.PolicyTypes); diff != "" {
				t.Errorf("policyTypes (-want +got):\n%s", diff)
			}
			var gotIn, gotOut []rule
			for _, in := range np.Spec.Ingress {
				gotIn = append(gotIn, rule{summarize(in.Ports), len(in.From)})
			}
			for _, out := range np.Spec.Egress {
				gotOut = append(gotOut, rule{summarize(out.Ports), len(out.To)})
			}
			if tt.wantAdminFrom != nil {
				var got []networkingv1.NetworkPolicyPeer
				for _, in := range np.Spec.Ingress {
					if len(in.Ports) == 1 && in.Ports[0].Port.String() == "admin" {
						got = in.From
					}
				}
				if diff := cmp.Diff(tt.wantAdminFrom, got); diff != "" {
					t.Errorf("admin port peers (-want +got):\n%s", diff)
				}
			}
			opt := cmp.AllowUnexported(rule{})
			if diff := cmp.Diff(tt.wantIngress, gotIn, opt); diff != "" {
				t.Errorf("ingress (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEgress, gotOut, opt); diff != "" {
				t.Errorf("egress (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRejectedValues(t *testing.T) {
	tests := []struct {
		name    string
		values  string
		wantErr string
	}{
		{"typo in a top-level key", "replicaCont: 3", "replicaCont"},
		{"string replica count", `replicaCount: "3"`, "replicaCount"},
		{"unknown environment", "config: {environment: staging}", "environment"},
		{"unknown redis mode", "externalRedis: {mode: ring}", "mode"},
		{"webhook secret without whsec_ prefix", `secrets: {webhookSecrets: ["hunter2"]}`, "webhookSecrets"},
		{"typo in a nested key", "config: {logLevl: debug}", "logLevl"},
		{"bad duration", "config: {idempotencyTTL: one-day}", "idempotencyTTL"},
		{"address without port", `{redis: {enabled: false}, externalRedis: {addrs: ["redis"]}}`, "addrs"},
		{"no webhook secrets", "secrets: {webhookSecrets: []}", "secrets.webhookSecrets is required"},
		{"no redis password with bundled redis", `secrets: {redisPassword: ""}`, "secrets.redisPassword is required"},
		{"grace shorter than drain", "{terminationGracePeriodSeconds: 15, config: {shutdownTimeoutSeconds: 15}}", "terminationGracePeriodSeconds (15) must exceed"},
		{"external redis without addrs", "redis: {enabled: false}", "externalRedis.addrs"},
		{"sentinel without master name", `{redis: {enabled: false}, externalRedis: {addrs: ["s:26379"], mode: sentinel}}`, "masterName"},
		{"negative replica acks", "config: {redis: {minReplicaAcks: -1}}", "minReplicaAcks"},
		{"unknown ack command", "config: {redis: {ackCommand: fsync}}", "ackCommand"},
		{"bad ack timeout", "config: {redis: {replicaAckTimeout: soon}}", "replicaAckTimeout"},
		{"replica acks on the bundled redis", "config: {redis: {minReplicaAcks: 1}}", "config.redis.minReplicaAcks needs a Redis with replicas"},
		{"negative min-replicas-to-write", "redis: {minReplicasToWrite: -1}", "minReplicasToWrite"},
		{"string min-replicas-max-lag", `redis: {minReplicasMaxLag: "10"}`, "minReplicasMaxLag"},
		{"production without api keys", "auth: {keys: []}", "production needs callers to authenticate"},
		{"keys and an existing keys secret", "auth: {existingSecret: ops-keys}", "set auth.keys or auth.existingSecret, not both"},
		{"key line without sha256 prefix", `auth: {keys: ["m_shop ` + strings.Repeat("ab", 32) + `"]}`, "keys"},
		{"key line with uppercase hex", `auth: {keys: ["m_shop sha256:` + strings.Repeat("AB", 32) + `"]}`, "keys"},
		{"merchant id with a dot", `auth: {keys: ["m.shop sha256:` + strings.Repeat("ab", 32) + `"]}`, "keys"},
		{"unknown tls mode", "tls: {mode: none}", "mode"},
		{"tls secret mode without a secret", "tls: {mode: secret}", "tls.mode=secret needs tls.secretName"},
		{"cert-manager without an issuer", "tls: {mode: certManager}", "tls.mode=certManager needs tls.certManager.issuerRef.name"},
		{"client CA behind a mesh", "tls: {clientCA: {secretName: merchants-ca}}", "tls.clientCA needs tls.mode secret or certManager"},
		{"typo in rate limits", "rateLimits: {default: {create: {perSec: 1, burst: 1}}}", "perSec"},
		{"unknown rate-limited method", "rateLimits: {default: {list: {perSecond: 1, burst: 1}}}", "list"},
		{"negative rate", "rateLimits: {default: {get: {perSecond: -1, burst: 1}}}", "perSecond"},
		{"bad merchant id in rate limits", "rateLimits: {merchants: {\"m shop\": {get: {perSecond: 1, burst: 1}}}}", "m shop"},
		{"admin port out of range", "containerPorts: {admin: 70000}", "admin"},
		{"string pprof", `config: {pprof: "yes"}`, "pprof"},
		{"typo in tracing", `tracing: {endpiont: "http://c:4317"}`, "endpiont"},
		{"tracing endpoint without a scheme", `tracing: {endpoint: "collector:4317"}`, "endpoint"},
		{"tracing endpoint without a port", `tracing: {endpoint: "http://collector"}`, "endpoint"},
		{"unknown sampler", "tracing: {sampler: sometimes}", "sampler"},
		{"sampler ratio above one", "tracing: {samplerArg: 2}", "samplerArg"},
		{"resource attribute with a comma", `tracing: {resourceAttributes: {team: "a,b"}}`, "team"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderRaw(t, []string{baseValues, tt.values}, renderOpts{})
			if err == nil {
				t.Fatalf("render with %s succeeded, want an error mentioning %q", tt.values, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("render error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestShippedValuesFiles renders every values file the repo ships (chart-testing's ci/ files and the
// kind dev values) so none of them can rot.
func TestShippedValuesFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../k8s/values-kind.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := renderRaw(t, []string{string(b)}, renderOpts{})
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			r, err := decodeAll(out)
			if err != nil {
				t.Fatal(err)
			}
			if r.count("Deployment") != 1 {
				t.Errorf("got %v, want one Deployment", r.keys())
			}
		})
	}
}

func TestBundledRedisKeepsPaymentsCompact(t *testing.T) {
	r := render(t, renderOpts{})
	sts := get[*appsv1.StatefulSet](t, r, "StatefulSet", fullname+"-redis")
	args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--appendonly yes", "--hash-max-listpack-value 128", "--requirepass $(REDIS_PASSWORD)"} {
		if !strings.Contains(args, want) {
			t.Errorf("redis args = %q, want them to contain %q", args, want)
		}
	}
}

func TestReplicaAcks(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   map[string]string
	}{
		{
			name: "off by default",
			want: map[string]string{"PAYMENTS_REDIS_MIN_REPLICA_ACKS": "0", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "250ms", "PAYMENTS_REDIS_ACK_COMMAND": "wait"},
		},
		{
			name: "external redis with replicas",
			values: `{redis: {enabled: false}, externalRedis: {addrs: ["s1:26379"], mode: sentinel, masterName: mymaster},
				config: {redis: {minReplicaAcks: 2, replicaAckTimeout: 100ms, ackCommand: waitaof}}}`,
			want: map[string]string{"PAYMENTS_REDIS_MIN_REPLICA_ACKS": "2", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "100ms", "PAYMENTS_REDIS_ACK_COMMAND": "waitaof"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cm := get[*corev1.ConfigMap](t, render(t, renderOpts{}, tt.values), "ConfigMap", fullname)
			got := map[string]string{}
			for k := range tt.want {
				got[k] = cm.Data[k]
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ConfigMap (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBundledRedisMinReplicasToWrite(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   []string
	}{
		{name: "off by default", want: []string{"--min-replicas-to-write", "0", "--min-replicas-max-lag", "10"}},
		{name: "set", values: "redis: {minReplicasToWrite: 1, minReplicasMaxLag: 5}", want: []string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := get[*appsv1.StatefulSet](t, render(t, renderOpts{}, tt.values), "StatefulSet", fullname+"-redis")
			args := sts.Spec.Template.Spec.Containers[0].Args
			var got []string
			for i, a := range args {
				if (a == "--min-replicas-to-write" || a == "--min-replicas-max-lag") && i+1 < len(args) {
					got = append(got, a, args[i+1])
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("redis args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAPIKeys(t *testing.T) {
	const shopLine = "m_shop sha256:9ff8bb6f750e537e462b0a718586c4a31cc400c75fdf988103e68d6a1a69db87"
	r := render(t, renderOpts{}, `auth: {keys: ["# m_shop rotates on 2026-12-01", "`+devKeyLine+`", "`+shopLine+`"]}`)
	sec := get[*corev1.Secret](t, r, "Secret", fullname+"-api-keys")
	want := "# m_shop rotates on 2026-12-01\n" + devKeyLine + "\n" + shopLine + "\n"
	if got := string(sec.Data["api-keys"]); got != want {
		t.Errorf("Secret api-keys = %q, want %q", got, want)
	}
	if _, inMain := get[*corev1.Secret](t, r, "Secret", fullname).Data["api-keys"]; inMain {
		t.Error("the keys are in the main Secret too, whose checksum rolls the pods")
	}
	d := get[*appsv1.Deployment](t, r, "Deployment", fullname)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	v := volume(t, spec, "api-keys")
	if v.Secret == nil || v.Secret.SecretName != fullname+"-api-keys" {
		t.Fatalf("api-keys volume = %+v, want the Secret %s-api-keys", v, fullname)
	}
	m, ok := mount(c, "api-keys")
	if !ok {
		t.Fatal("the server container does not mount api-keys")
	}
	// A subPath mount is a copy taken at start: a rotated key would never reach the server.
	if m.MountPath != "/etc/payments/auth" || m.SubPath != "" || !m.ReadOnly {
		t.Errorf("api-keys mount = %+v, want the read-only directory /etc/payments/auth without subPath", m)
	}
	cm := get[*corev1.ConfigMap](t, r, "ConfigMap", fullname)
	if got := cm.Data["PAYMENTS_AUTH_KEYS_FILE"]; got != "/etc/payments/auth/api-keys" {
		t.Errorf("PAYMENTS_AUTH_KEYS_FILE = %q, want /etc/payments/auth/api-keys", got)
	}

	t.Run("development without keys", func(t *testing.T) {
		r := render(t, renderOpts{}, "{config: {environment: development}, auth: {keys: []}}")
		if _, ok := r.objects["Secret/"+fullname+"-api-keys"]; ok {
			t.Error("a keys Secret without keys")
		}
		if _, ok := get[*corev1.ConfigMap](t, r, "ConfigMap", fullname).Data["PAYMENTS_AUTH_KEYS_FILE"]; ok {
			t.Error("PAYMENTS_AUTH_KEYS_FILE set without keys: the server would not fall back to the dev key")
		}
		for _, v := range get[*appsv1.Deployment](t, r, "Deployment", fullname).Spec.Template.Spec.Volumes {
			if v.Name == "api-keys" {
				t.Errorf("api-keys volume without keys: %+v", v)
			}
		}
	})
}

// TestKeyRotationKeepsPodTemplate: adding, replacing or removing API keys changes only the keys Secret, so
// `helm upgrade` rolls nothing and the mounted file changes under the running server.
func TestKeyRotationKeepsPodTemplate(t *testing.T) {
	const newLine = "m_dev sha256:9ff8bb6f750e537e462b0a718586c4a31cc400c75fdf988103e68d6a1a69db87"
	before := render(t, renderOpts{})
	for _, tt := range []struct{ name, values string }{
		{"key added", `auth: {keys: ["` + devKeyLine + `", "` + newLine + `"]}`},
		{"key replaced", `auth: {keys: ["` + newLine + `"]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			after := render(t, renderOpts{}, tt.values)
			tmpl := func(r rendered) corev1.PodTemplateSpec {
				return get[*appsv1.Deployment](t, r, "Deployment", fullname).Spec.Template
			}
			if diff := cmp.Diff(tmpl(before), tmpl(after)); diff != "" {
				t.Errorf("pod template changed on a key rotation (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(get[*corev1.ConfigMap](t, before, "ConfigMap", fullname), get[*corev1.ConfigMap](t, after, "ConfigMap", fullname)); diff != "" {
				t.Errorf("ConfigMap changed on a key rotation (-before +after):\n%s", diff)
			}
			key := "Secret/" + fullname + "-api-keys"
			if cmp.Equal(before.objects[key], after.objects[key]) {
				t.Errorf("%s unchanged: the rotation went nowhere", key)
			}
		})
	}
}

func TestTLSModes(t *testing.T) {
	type want struct {
		env         map[string]string // ConfigMap entries; "" means absent
		tlsSecret   string            // secret of the tls volume; "" means no volume
		clientCA    string            // secret of the client-ca volume; "" means no volume
		certificate bool
		execProbes  bool
	}
	tests := []struct {
		name   string
		values string
		want   want
	}{
		{
			name:   "mesh by default",
			values: "",
			want: want{env: map[string]string{"PAYMENTS_TLS_MESH": "true", "PAYMENTS_TLS_CERT_FILE": "", "PAYMENTS_TLS_KEY_FILE": "",
				"PAYMENTS_TLS_CLIENT_CA_FILE": ""}},
		},
		{
			name:   "operator's secret",
			values: "tls: {mode: secret, secretName: payments-tls}",
			want: want{env: map[string]string{"PAYMENTS_TLS_MESH": "", "PAYMENTS_TLS_CERT_FILE": "/etc/payments/tls/tls.crt",
				"PAYMENTS_TLS_KEY_FILE": "/etc/payments/tls/tls.key", "PAYMENTS_TLS_CLIENT_CA_FILE": ""},
				tlsSecret: "payments-tls", execProbes: true},
		},
		{
			name: "cert-manager with merchant mTLS",
			values: `tls: {mode: certManager, certManager: {issuerRef: {name: payments-ca, kind: ClusterIssuer}, extraDnsNames: [payments.example.test]},
				clientCA: {secretName: merchants-ca, key: bundle.pem}}`,
			want: want{env: map[string]string{"PAYMENTS_TLS_MESH": "", "PAYMENTS_TLS_CERT_FILE": "/etc/payments/tls/tls.crt",
				"PAYMENTS_TLS_KEY_FILE": "/etc/payments/tls/tls.key", "PAYMENTS_TLS_CLIENT_CA_FILE": "/etc/payments/client-ca/bundle.pem"},
				tlsSecret: fullname + "-tls", clientCA: "merchants-ca", certificate: true, execProbes: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, renderOpts{}, tt.values)
			cm := get[*corev1.ConfigMap](t, r, "ConfigMap", fullname)
			for k, v := range tt.want.env {
				if got, ok := cm.Data[k]; got != v || (v == "" && ok) {
					t.Errorf("ConfigMap %s = %q (set %v), want %q", k, got, ok, v)
				}
			}
			spec := get[*appsv1.Deployment](t, r, "Deployment", fullname).Spec.Template.Spec
			c := spec.Containers[0]
			for name, vol := range map[string]struct{ secret, file string }{
				"tls":       {tt.want.tlsSecret, tt.want.env["PAYMENTS_TLS_CERT_FILE"]},
				"client-ca": {tt.want.clientCA, tt.want.env["PAYMENTS_TLS_CLIENT_CA_FILE"]},
			} {
				secret := vol.secret
				m, mounted := mount(c, name)
				if secret == "" {
					if mounted {
						t.Errorf("volume %s mounted, want none", name)
					}
					continue
				}
				if v := volume(t, spec, name); v.Secret == nil || v.Secret.SecretName != secret {
					t.Errorf("volume %s = %+v, want the Secret %s", name, v, secret)
				}
				if !mounted || m.SubPath != "" || !m.ReadOnly || filepath.Dir(vol.file) != m.MountPath {
					t.Errorf("volume %s mount = %+v, want a read-only directory without subPath that holds the configured files", name, m)
				}
			}
			if got := r.count("Certificate"); got != map[bool]int{true: 1}[tt.want.certificate] {
				t.Errorf("%d Certificates rendered", got)
			}

			job := get[*batchv1.Job](t, r, "Job", fullname+"-test").Spec.Template.Spec.Containers[0]
			if got := slices.Contains(job.Args, "-tls"); got != tt.want.execProbes {
				t.Errorf("helm test args %v: -tls present = %v, want %v", job.Args, got, tt.want.execProbes)
			}
			for name, p := range map[string]struct {
				probe   *corev1.Probe
				service string
			}{
				"startup":   {c.StartupProbe, "liveness"},
				"liveness":  {c.LivenessProbe, "liveness"},
				"readiness": {c.ReadinessProbe, "payments.v1.PaymentService"},
			} {
				if !tt.want.execProbes {
					if p.probe.GRPC == nil || p.probe.Exec != nil {
						t.Errorf("%s probe = %+v, want the native gRPC probe", name, p.probe)
					}
					continue
				}
				// The kubelet's gRPC probe cannot speak TLS; the binary's own client on loopback can.
				if p.probe.Exec == nil || p.probe.GRPC != nil {
					t.Fatalf("%s probe = %+v, want an exec probe with TLS on", name, p.probe)
				}
				want := []string{"/payments-svc", "healthcheck", "-addr", "127.0.0.1:50051", "-tls", "-insecure-skip-verify",
					"-service", p.service, "-timeout", "2s"}
				if diff := cmp.Diff(want, p.probe.Exec.Command); diff != "" {
					t.Errorf("%s probe command (-want +got):\n%s", name, diff)
				}
			}
		})
	}

	t.Run("certificate", func(t *testing.T) {
		r := render(t, renderOpts{}, `tls: {mode: certManager, certManager: {issuerRef: {name: payments-ca, kind: ClusterIssuer},
			duration: 720h, renewBefore: 240h, extraDnsNames: [payments.example.test]}}`)
		cert := get[*certificate](t, r, "Certificate", fullname)
		if cert.Spec.SecretName != fullname+"-tls" {
			t.Errorf("secretName = %q, want %s-tls", cert.Spec.SecretName, fullname)
		}
		wantDNS := []string{fullname, fullname + "." + namespace, fullname + "." + namespace + ".svc",
			fullname + "." + namespace + ".svc.cluster.local", "payments.example.test"}
		if diff := cmp.Diff(wantDNS, cert.Spec.DNSNames); diff != "" {
			t.Errorf("dnsNames (-want +got):\n%s", diff)
		}
		if ref := cert.Spec.IssuerRef; ref.Name != "payments-ca" || ref.Kind != "ClusterIssuer" || ref.Group != "cert-manager.io" {
			t.Errorf("issuerRef = %+v", ref)
		}
		if cert.Spec.Duration != "720h" || cert.Spec.RenewBefore != "240h" || cert.Spec.PrivateKey.RotationPolicy != "Always" {
			t.Errorf("duration %q, renewBefore %q, rotationPolicy %q; want 720h, 240h, Always",
				cert.Spec.Duration, cert.Spec.RenewBefore, cert.Spec.PrivateKey.RotationPolicy)
		}
		if !slices.Contains(cert.Spec.Usages, "server auth") {
			t.Errorf("usages = %v, want server auth", cert.Spec.Usages)
		}
		// The public Service is what the names must cover.
		if get[*corev1.Service](t, r, "Service", fullname).Name != cert.Spec.DNSNames[0] {
			t.Error("the Certificate's first name is not the public Service's")
		}
	})
}

func TestRateLimits(t *testing.T) {
	const values = `rateLimits: {default: {create: {perSecond: 100, burst: 200}, get: {perSecond: 500, burst: 1000}},
		merchants: {m_big: {create: {perSecond: 1000, burst: 2000}}, m_free: {get: {perSecond: 0, burst: 0}}}}`
	cm := get[*corev1.ConfigMap](t, render(t, renderOpts{}, values), "ConfigMap", fullname)
	raw, ok := cm.Data["PAYMENTS_RATE_LIMITS"]
	if !ok {
		t.Fatal("no PAYMENTS_RATE_LIMITS in the ConfigMap")
	}
	type limit struct {
		PerSecond float64 `json:"perSecond"`
		Burst     int     `json:"burst"`
	}
	type ops struct {
		Create *limit `json:"create,omitempty"`
		Get    *limit `json:"get,omitempty"`
	}
	var got struct {
		Default   ops            `json:"default"`
		Merchants map[string]ops `json:"merchants"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("PAYMENTS_RATE_LIMITS %q: %v", raw, err)
	}
	want := got
	want.Default = ops{Create: &limit{100, 200}, Get: &limit{500, 1000}}
	want.Merchants = map[string]ops{"m_big": {Create: &limit{1000, 2000}}, "m_free": {Get: &limit{0, 0}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PAYMENTS_RATE_LIMITS %s (-want +got):\n%s", raw, diff)
	}
}

// TestTracing: the tracing values become the OpenTelemetry SDK's own variables in the ConfigMap, each
// only when set, so the defaults export nothing and leave the SDK's sampler alone.
func TestTracing(t *testing.T) {
	otel := func(cm *corev1.ConfigMap) map[string]string {
		out := map[string]string{}
		for k, v := range cm.Data {
			if strings.HasPrefix(k, "OTEL_") {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name   string
		values string
		want   map[string]string
	}{
		{name: "off by default", want: map[string]string{}},
		{
			name:   "endpoint only",
			values: `tracing: {endpoint: "http://jaeger-collector.observability:4317"}`,
			want:   map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger-collector.observability:4317"},
		},
		{
			name: "everything",
			values: `tracing: {endpoint: "https://collector.example:4317", sampler: parentbased_traceidratio, samplerArg: 0.25,
				resourceAttributes: {service.namespace: shop, deployment.environment.name: prod}}`,
			want: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4317",
				"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
				"OTEL_TRACES_SAMPLER_ARG":     "0.25",
				// Key order, so the ConfigMap (and the pods' checksum) is stable.
				"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod,service.namespace=shop",
			},
		},
		{
			name:   "string sampler argument",
			values: `tracing: {sampler: traceidratio, samplerArg: "0.5"}`,
			want:   map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var values []string
			if tt.values != "" {
				values = append(values, tt.values)
			}
			cm := get[*corev1.ConfigMap](t, render(t, renderOpts{}, values...), "ConfigMap", fullname)
			if diff := cmp.Diff(tt.want, otel(cm)); diff != "" {
				t.Errorf("OTEL_* of the ConfigMap (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNotes(t *testing.T) {
	tests := []struct {
		name, values string
		want, reject []string
	}{
		{
			name:   "mesh warns about plaintext and shows the dev key it accepts",
			want:   []string{"WARNING: tls.mode=mesh", "PLAINTEXT", "KEY=pk_dev_yd6gdxgynqzqdeqmhvropepl65uclxmc", "grpcurl -plaintext", "service/" + fullname + "-admin 9090:9090"},
			reject: []string{"grpcurl -insecure"},
		},
		{
			name:   "own keys: no key printed",
			values: `auth: {keys: ["m_shop sha256:9ff8bb6f750e537e462b0a718586c4a31cc400c75fdf988103e68d6a1a69db87"]}`,
			want:   []string{"KEY=<your API key>"},
			reject: []string{"pk_dev_"},
		},
		{
			name:   "cert-manager",
			values: "tls: {mode: certManager, certManager: {issuerRef: {name: ca}}}",
			want:   []string{"grpcurl -insecure", "get certificate " + fullname},
			reject: []string{"PLAINTEXT", "grpcurl -plaintext"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := notes(t, tt.values)
			for _, w := range tt.want {
				if !strings.Contains(n, w) {
					t.Errorf("NOTES.txt lacks %q:\n%s", w, n)
				}
			}
			for _, r := range tt.reject {
				if strings.Contains(n, r) {
					t.Errorf("NOTES.txt contains %q:\n%s", r, n)
				}
			}
		})
	}
}
