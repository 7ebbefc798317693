package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payments-svc/payments-svc/test/kube/internal/kubetest"

	"github.com/payments-svc/payments-svc/test/kube/controlplane"
)

// serverVersion is the API server's reported version, e.g. v1.34.4.
func serverVersion(t *testing.T) string {
	t.Helper()
	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	return v.ServerVersion.GitVersion
}

// TestControlPlaneVersion checks the build stamped the version: without the
// ldflags the server says v0.0.0-master and Helm's kubeVersion checks misfire.
func TestControlPlaneVersion(t *testing.T) {
	if got, want := serverVersion(t), "v1.34.4"; got != want {
		t.Errorf("server version: got %q, want %q", got, want)
	}
}

// TestServerDryRunRejectsSelectorMismatch shows the API server catches what
// helm lint does not.
func TestServerDryRunRejectsSelectorMismatch(t *testing.T) {
	ns := newNamespace(t, "smoke-broken")
	r := runTool(t, "", "kubectl", "apply", "--dry-run=server", "-n", ns, "-f", filepath.Join("testdata", "broken-selector.yaml"))
	if r.err == nil {
		t.Fatalf("server dry-run accepted a Deployment whose selector does not match its pods:\n%v", r)
	}
	if want := "`selector` does not match template `labels`"; !strings.Contains(r.stderr, want) {
		t.Errorf("server dry-run error: got %q, want it to contain %q", r.stderr, want)
	}
}

// TestSmokeWorkload runs a plain Deployment, Service, PDB and Job through the
// controllers and kwok, proving the harness before any chart is involved.
func TestSmokeWorkload(t *testing.T) {
	ns := newNamespace(t, "smoke")
	kubectl(t, "apply", "-n", ns, "-f", filepath.Join("testdata", "smoke.yaml"))

	kubectl(t, "wait", "-n", ns, "--for=condition=Available", "deployment/web", "--timeout=2m")
	assertPodsRunningOnNode(t, ns, "app=web", 2)
	assertEndpoints(t, ns, "web", 2)
	assertPDBComputed(t, ns, "web", 2)
	kubectl(t, "wait", "-n", ns, "--for=condition=Complete", "job/once", "--timeout=2m")
}

// assertPodsRunningOnNode waits until exactly want pods match selector and all
// are Running on the kwok node.
func assertPodsRunningOnNode(t *testing.T, ns, selector string, want int) {
	t.Helper()
	kubetest.Eventually(t, 2*time.Minute, "pods "+selector+" Running on "+controlplane.NodeName, func() error {
		var list struct {
			Items []struct {
				Metadata struct {
					Name              string
					DeletionTimestamp *string `json:"deletionTimestamp"`
				}
				Spec   struct{ NodeName string }
				Status struct{ Phase string }
			}
		}
		out := kubectl(t, "get", "pods", "-n", ns, "-l", selector, "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return err
		}
		var states []string
		running := 0
		for _, p := range list.Items {
			states = append(states, fmt.Sprintf("%s on %q: %s", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase))
			if p.Metadata.DeletionTimestamp == nil && p.Status.Phase == "Running" && p.Spec.NodeName == controlplane.NodeName {
				running++
			}
		}
		if running != want || len(list.Items) != want {
			return fmt.Errorf("got %d pods, %d Running on %s, want %d: %v", len(list.Items), running, controlplane.NodeName, want, states)
		}
		return nil
	})
}

// assertEndpoints waits until the Service's EndpointSlices list want ready
// endpoints for every port of the Service. A named targetPort that no pod
// port carries leaves that port without endpoints, so this catches it too.
func assertEndpoints(t *testing.T, ns, service string, want int) {
	t.Helper()
	var svc struct {
		Spec struct {
			Ports []struct{ Name string }
		}
	}
	if err := json.Unmarshal([]byte(kubectl(t, "get", "service", "-n", ns, service, "-o", "json")), &svc); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, 2*time.Minute, "service "+service+" endpoints", func() error {
		var list struct {
			Items []struct {
				Ports     []struct{ Name *string }
				Endpoints []struct {
					Conditions struct{ Ready *bool }
				}
			}
		}
		out := kubectl(t, "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name="+service, "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return err
		}
		ready := map[string]int{} // port name -> ready endpoints
		for _, s := range list.Items {
			n := 0
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					n++
				}
			}
			for _, p := range s.Ports {
				if p.Name != nil {
					ready[*p.Name] += n
				}
			}
		}
		for _, p := range svc.Spec.Ports {
			if ready[p.Name] != want {
				return fmt.Errorf("port %q: got %d ready endpoints, want %d (all ports: %v)", p.Name, ready[p.Name], want, ready)
			}
		}
		return nil
	})
}

// assertPDBComputed waits until the disruption controller has computed the
// budget's status over the expected pods.
func assertPDBComputed(t *testing.T, ns, name string, wantPods int) {
	t.Helper()
	kubetest.Eventually(t, 2*time.Minute, "PodDisruptionBudget "+name+" status", func() error {
		var pdb struct {
			Metadata struct{ Generation int64 }
			Status   struct {
				ObservedGeneration int64 `json:"observedGeneration"`
				ExpectedPods       int   `json:"expectedPods"`
				CurrentHealthy     int   `json:"currentHealthy"`
				DesiredHealthy     int   `json:"desiredHealthy"`
			}
		}
		out := kubectl(t, "get", "pdb", "-n", ns, name, "-o", "json")
		if err := json.Unmarshal([]byte(out), &pdb); err != nil {
			return err
		}
		s := pdb.Status
		if s.ObservedGeneration != pdb.Metadata.Generation || s.ExpectedPods != wantPods || s.CurrentHealthy != wantPods {
			return fmt.Errorf("status %+v at generation %d, want %d expected and healthy pods", s, pdb.Metadata.Generation, wantPods)
		}
		return nil
	})
}
