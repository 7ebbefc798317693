//go:build integration && container

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	paymentsv1 "github.com/payments-svc/payments-svc/proto/payments/v1"
)

// These tests run the built image and the compose file on a real Docker
// engine (`make test-container`). They publish ports on 127.0.0.1 only, let
// Docker pick them, and remove every container, network, volume and image
// tag they create, by its id or their own unique name.

const containerRedisPassword = "container-test-only"

// devAPIKey is the public development key that dev/api-keys, the keys file of
// docker-compose.yml, lists for merchant m_dev.
const devAPIKey = "pk_dev_yd6gdxgynqzqdeqmhvropepl65uclxmc"

// withDevKey sends devAPIKey on every call, as a merchant's client does.
func withDevKey() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
		cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+devAPIKey)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// devKeyClient is a plaintext connection to addr that authenticates as m_dev.
func devKeyClient(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), withDevKey()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerCmd(nil, "docker", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// container is one container this test started, removed when the test ends.
type container struct {
	t  *testing.T
	id string
}

func runContainer(t *testing.T, args ...string) *container {
	t.Helper()
	id := docker(t, append([]string{"run", "-d"}, args...)...)
	c := &container{t: t, id: id}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := dockerCmd(nil, "docker", "logs", "--tail", "40", id)
			t.Logf("container %.12s logs:\n%s", id, logs)
		}
		_, _ = dockerCmd(nil, "docker", "rm", "-f", "-v", id)
	})
	return c
}

func (c *container) inspect(format string) string {
	c.t.Helper()
	return docker(c.t, "inspect", "-f", format, c.id)
}

// hostAddr is the 127.0.0.1 address Docker published for the container port.
func (c *container) hostAddr(port string) string {
	c.t.Helper()
	out := docker(c.t, "port", c.id, port)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "127.0.0.1:") {
			return line
		}
	}
	c.t.Fatalf("port %s of %.12s is not published on 127.0.0.1: %q", port, c.id, out)
	return ""
}

// waitHealthy waits for the image's own HEALTHCHECK to report healthy; the
// shipped interval is 10s, so this takes about that long.
func (c *container) waitHealthy() {
	c.t.Helper()
	err := poll(90*time.Second, 250*time.Millisecond, func() error {
		state := c.inspect("{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}")
		switch {
		case state == "running healthy":
			return nil
		case !strings.HasPrefix(state, "running"):
			return fmt.Errorf("container is %q", state)
		}
		return fmt.Errorf("state %q", state)
	})
	if err != nil {
		c.t.Fatalf("container %.12s: %v, want running healthy", c.id, err)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestImageLockedDown runs the image as a production pod would: read-only
// root, every capability dropped, uid 65532, a mounted API keys file, beside
// a real Redis on a network of its own. The shipped HEALTHCHECK turns
// healthy, gRPC answers callers with a key and refuses those without, the
// admin port serves metrics and health pages that the public HTTP port does
// not, `docker stop` under load exits 0 with only retryable failures, and
// after a restart every key retried gives exactly one payment.
func TestImageLockedDown(t *testing.T) {
	image := envOr("IMAGE", "payments-svc:dev")
	redisImage := envOr("REDIS_IMAGE", "payments-local/redis:bookworm")

	network := docker(t, "network", "create", uniqueName("payments-it"))
	t.Cleanup(func() { _, _ = dockerCmd(nil, "docker", "network", "rm", network) })

	rc := runContainer(t, "--network", network, "--network-alias", "redis", "-p", "127.0.0.1::6379",
		"--entrypoint", "redis-server", redisImage,
		"--appendonly", "yes", "--dir", "/data", "--requirepass", containerRedisPassword)
	rdb := redis.NewClient(&redis.Options{Addr: rc.hostAddr("6379/tcp"), Password: containerRedisPassword})
	t.Cleanup(func() { rdb.Close() })
	if err := poll(readyTimeout, 50*time.Millisecond, func() error {
		return rdb.Ping(context.Background()).Err()
	}); err != nil {
		t.Fatalf("redis container: %v", err)
	}

	pc := runContainer(t, "--network", network,
		"--read-only", "--cap-drop", "ALL", "--user", "65532:65532", "--security-opt", "no-new-privileges",
		"-p", "127.0.0.1::50051", "-p", "127.0.0.1::8080", "-p", "127.0.0.1::9090", "--stop-timeout", "30",
		// The compose file's keys file; production refuses to start without one,
		// and without TLS files it needs to be told plaintext is intended.
		"-v", filepath.Join(repoRoot(t), "dev")+":/etc/payments/auth:ro",
		"-e", "PAYMENTS_AUTH_KEYS_FILE=/etc/payments/auth/api-keys",
		"-e", "PAYMENTS_TLS_MESH=true",
		"-e", "PAYMENTS_ENVIRONMENT=production",
		"-e", "PAYMENTS_REDIS_ADDRS=redis:6379",
		"-e", "PAYMENTS_REDIS_PASSWORD="+containerRedisPassword,
		"-e", "PAYMENTS_WEBHOOK_SECRETS="+webhookSecret,
		"-e", "PAYMENTS_SHUTDOWN_TIMEOUT=10s",
		// The load below would otherwise measure the default quota.
		"-e", "PAYMENTS_RATE_LIMITS="+unlimited,
		image)
	pc.waitHealthy()
	if got := pc.inspect("{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}"); got != "65532:65532 true [ALL]" {
		t.Errorf("container user, read-only root, dropped caps = %q, want %q", got, "65532:65532 true [ALL]")
	}

	client := paymentsv1.NewPaymentServiceClient(devKeyClient(t, pc.hostAddr("50051/tcp")))
	createReplayGet(t, client, uniqueName("image"))
	anonymous := paymentsv1.NewPaymentServiceClient(grpcClient(t, pc.hostAddr("50051/tcp")))
	if _, _, err := call(anonymous, uniqueName("anonymous"), 10*time.Second); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RequestPayment without an API key: %v, want Unauthenticated", err)
	}

	adminBase := "http://" + pc.hostAddr("9090/tcp")
	for _, tc := range []struct {
		path, want string
	}{
		{"/healthz", ""},
		{"/readyz", ""},
		{"/metrics", "grpc_server_handled_total"},
	} {
		if code, body := httpGet(t, adminBase+tc.path); code != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("admin GET %s = %d (%.80q), want 200 containing %q", tc.path, code, body, tc.want)
		}
	}
	// The public port serves the webhook alone: metrics and health pages
	// there would leak to whoever can reach the provider's endpoint.
	publicBase := "http://" + pc.hostAddr("8080/tcp")
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/"} {
		if code, body := httpGet(t, publicBase+path); code == http.StatusOK {
			t.Errorf("public GET %s = 200 (%.80q), want it served only on the admin port", path, body)
		}
	}

	// docker stop under load: SIGTERM, drain, exit 0. The load's client
	// waits for a connection as a patient client would, so once the server is
	// gone each call ends at its deadline instead of spinning on refusals, and
	// the load runs for the whole stop.
	loadConn, err := grpc.NewClient(pc.hostAddr("50051/tcp"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)), withDevKey())
	if err != nil {
		t.Fatal(err)
	}
	defer loadConn.Close()
	l := startLoad(4, 1, uniqueName("stop"), []paymentsv1.PaymentServiceClient{paymentsv1.NewPaymentServiceClient(loadConn)}, 3*time.Second)
	l.waitOKs(t, 40)
	if _, err := dockerCmd(nil, "docker", "stop", pc.id); err != nil {
		t.Errorf("docker stop under load: %v, want success", err)
	}
	l.disrupted()
	attempts := l.wait()
	if got := pc.inspect("{{.State.ExitCode}} {{.State.OOMKilled}}"); got != "0 false" {
		t.Errorf("exit code, OOM-killed after docker stop = %q, want %q", got, "0 false")
	}
	retryable := map[codes.Code]bool{codes.Unavailable: true, codes.DeadlineExceeded: true, codes.Canceled: true}
	var failed int
	for _, a := range attempts {
		if code := status.Code(a.err); code != codes.OK {
			failed++
			if !retryable[code] {
				t.Errorf("call %s during docker stop: %v, want OK or a retryable code", a.key, a.err)
			}
		}
	}
	t.Logf("%d calls during docker stop, %d failed retryably", len(attempts), failed)

	// The same container again: every key retried gives one payment, and the
	// ones that had succeeded replay exactly.
	docker(t, "start", pc.id)
	pc.waitHealthy()
	client = paymentsv1.NewPaymentServiceClient(devKeyClient(t, pc.hostAddr("50051/tcp")))
	retryAll(t, attempts, func(int) paymentsv1.PaymentServiceClient { return client }, 10*time.Second)
	checkPaymentCount(t, rdb, len(attempts)+1)
	checkNoPartialRecords(t, rdb)
}

// TestComposeUpSurvivesRestarts runs `make up` as a developer would (with
// Docker choosing the loopback ports), creates, replays and reads a payment
// with the dev key from the compose file's keys file, reads /metrics on the
// admin port, restarts both services, and checks that the payment and its
// idempotency record survived; then `make down`.
func TestComposeUpSurvivesRestarts(t *testing.T) {
	root := repoRoot(t)
	project := uniqueName("payments-it")
	compose := envOr("COMPOSE", "docker compose")
	env := []string{
		"COMPOSE_PROJECT_NAME=" + project,
		"COMPOSE=" + compose,
		"PAYMENTS_GRPC_PORT=",
		"PAYMENTS_HTTP_PORT=",
		"PAYMENTS_ADMIN_PORT=",
		"PAYMENTS_IMAGE=payments-svc:" + project,
		"PAYMENTS_REDIS_IMAGE=" + envOr("REDIS_IMAGE", "payments-local/redis:bookworm"),
	}
	composeCmd := func(args ...string) (string, error) {
		f := strings.Fields(compose)
		return dockerCmd(env, f[0], append(f[1:], append([]string{"--project-directory", root}, args...)...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := composeCmd("logs", "--tail", "30")
			t.Logf("compose logs:\n%s", logs)
		}
		_, _ = composeCmd("down", "-v", "--remove-orphans")
		_, _ = dockerCmd(nil, "docker", "image", "rm", "payments-svc:"+project)
	})

	if _, err := dockerCmd(env, "make", "-C", root, "--no-print-directory", "up"); err != nil {
		t.Fatalf("make up: %v", err)
	}
	hostAddr := func(port string) string {
		t.Helper()
		out, err := composeCmd("port", "payments", port)
		if err != nil || !strings.HasPrefix(out, "127.0.0.1:") {
			t.Fatalf("compose port payments %s = %q, %v; want a 127.0.0.1 address", port, out, err)
		}
		return out
	}
	grpcAddr := func() string { t.Helper(); return hostAddr("50051") }
	conn := devKeyClient(t, grpcAddr())
	key := uniqueName("compose")
	created := createReplayGet(t, paymentsv1.NewPaymentServiceClient(conn), key)
	if code, body := httpGet(t, "http://"+hostAddr("9090")+"/metrics"); code != http.StatusOK || !strings.Contains(body, "grpc_server_handled_total") {
		t.Errorf("GET /metrics on the admin port = %d (%.80q), want 200 with grpc_server_handled_total", code, body)
	}

	if _, err := composeCmd("restart", "redis", "payments"); err != nil {
		t.Fatalf("compose restart: %v", err)
	}
	if _, err := composeCmd("up", "--wait", "--wait-timeout", "120", "--no-build"); err != nil {
		t.Fatalf("compose up --wait after restart: %v", err)
	}
	conn = devKeyClient(t, grpcAddr())
	waitHealth(t, healthpb.NewHealthClient(conn), "", healthpb.HealthCheckResponse_SERVING, readyTimeout)
	checkReplay(t, paymentsv1.NewPaymentServiceClient(conn), key, created)

	if out, err := dockerCmd(env, "make", "-C", root, "--no-print-directory", "down"); err != nil {
		t.Fatalf("make down: %v", err)
	} else if ps, _ := composeCmd("ps", "-a", "-q"); ps != "" {
		t.Errorf("containers left after make down:\n%s\n%s", ps, out)
	}
}
