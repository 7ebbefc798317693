package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/payments-svc/payments-svc/internal/metrics"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Setenv("PAYMENTS_WEBHOOK_SECRETS", testSecret)
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatalf("LoadConfig() error = %v", err)
	}
	want := Config{
		Environment:      "development",
		GRPCAddr:         ":50051",
		HTTPAddr:         ":8080",
		AdminAddr:        ":9090",
		GRPCReflection:   true,
		GRPCMaxRecvBytes: 65536,
		LogFlushInterval: 100 * time.Millisecond,
		ShutdownTimeout:  15 * time.Second,
		IdempotencyTTL:   24 * time.Hour,
		HealthInterval:   time.Second,
		ReloadInterval:   5 * time.Second,
		Redis: RedisConfig{
			Mode:              "auto",
			DialTimeout:       2 * time.Second,
			ReadTimeout:       500 * time.Millisecond,
			WriteTimeout:      500 * time.Millisecond,
			ConnMaxLifetime:   2 * time.Second,
			ReplicaAckTimeout: 250 * time.Millisecond,
			AckCommand:        "wait",
		},
		Webhook: WebhookConfig{Secrets: []string{testSecret}, Tolerance: 5 * time.Minute},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("LoadConfig() defaults mismatch (-want +got):\n%s", diff)
	}
	if !cfg.Embedded() {
		t.Errorf("Embedded() = false with no PAYMENTS_REDIS_ADDRS, want true")
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; empty means success
		check   func(*testing.T, Config)
	}{
		{name: "redis list and typed durations", env: map[string]string{"PAYMENTS_REDIS_ADDRS": "a:1,b:2", "PAYMENTS_IDEMPOTENCY_TTL": "2h", "PAYMENTS_LOG_LEVEL": "debug"},
			check: func(t *testing.T, c Config) {
				if diff := cmp.Diff([]string{"a:1", "b:2"}, c.Redis.Addrs); diff != "" {
					t.Errorf("Addrs mismatch (-want +got):\n%s", diff)
				}
				if c.IdempotencyTTL != 2*time.Hour || c.LogLevel.String() != "DEBUG" {
					t.Errorf("got ttl %s level %s, want 2h DEBUG", c.IdempotencyTTL, c.LogLevel)
				}
			}},
		{name: "production with redis, keys and a mesh", env: map[string]string{"PAYMENTS_ENVIRONMENT": "production", "PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_AUTH_KEYS_FILE": "/keys", "PAYMENTS_TLS_MESH": "true"},
			check: func(t *testing.T, c Config) {
				if c.DevAuth() {
					t.Errorf("DevAuth() = true in production, want false")
				}
			}},
		{name: "production with tls and client certificates only", env: map[string]string{"PAYMENTS_ENVIRONMENT": "production", "PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_TLS_CERT_FILE": "/c", "PAYMENTS_TLS_KEY_FILE": "/k", "PAYMENTS_TLS_CLIENT_CA_FILE": "/ca"}},
		{name: "production without credentials", env: map[string]string{"PAYMENTS_ENVIRONMENT": "production", "PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_TLS_MESH": "true"}, wantErr: "PAYMENTS_AUTH_KEYS_FILE or PAYMENTS_TLS_CLIENT_CA_FILE is required"},
		{name: "production refuses plaintext", env: map[string]string{"PAYMENTS_ENVIRONMENT": "production", "PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_AUTH_KEYS_FILE": "/keys"}, wantErr: "unless PAYMENTS_TLS_MESH=true"},
		{name: "development takes the dev key", env: map[string]string{},
			check: func(t *testing.T, c Config) {
				if !c.DevAuth() {
					t.Errorf("DevAuth() = false in development without keys, want true")
				}
			}},
		{name: "a keys file turns the dev key off", env: map[string]string{"PAYMENTS_AUTH_KEYS_FILE": "/keys"},
			check: func(t *testing.T, c Config) {
				if c.DevAuth() {
					t.Errorf("DevAuth() = true with a keys file, want false")
				}
			}},
		{name: "rate limits", env: map[string]string{"PAYMENTS_RATE_LIMITS": `{"default":{"create":{"perSecond":5,"burst":5}}}`}},
		{name: "bad rate limits", env: map[string]string{"PAYMENTS_RATE_LIMITS": `{"default":{"create":{"perSecond":5}}}`}, wantErr: "PAYMENTS_RATE_LIMITS"},
		{name: "zero reload interval", env: map[string]string{"PAYMENTS_RELOAD_INTERVAL": "0s"}, wantErr: "PAYMENTS_RELOAD_INTERVAL must be positive"},
		{name: "payment ttl equal to idempotency ttl", env: map[string]string{"PAYMENTS_PAYMENT_TTL": "24h"}},
		{name: "bad duration names the variable", env: map[string]string{"PAYMENTS_IDEMPOTENCY_TTL": "soon"}, wantErr: "PAYMENTS_IDEMPOTENCY_TTL"},
		{name: "bad bool names the variable", env: map[string]string{"PAYMENTS_GRPC_REFLECTION": "maybe"}, wantErr: "PAYMENTS_GRPC_REFLECTION"},
		{name: "bad log level", env: map[string]string{"PAYMENTS_LOG_LEVEL": "loud"}, wantErr: "PAYMENTS_LOG_LEVEL"},
		{name: "unknown environment", env: map[string]string{"PAYMENTS_ENVIRONMENT": "staging"}, wantErr: "PAYMENTS_ENVIRONMENT"},
		{name: "production refuses the embedded store", env: map[string]string{"PAYMENTS_ENVIRONMENT": "production"}, wantErr: "PAYMENTS_REDIS_ADDRS is required"},
		{name: "payment ttl shorter than idempotency ttl", env: map[string]string{"PAYMENTS_PAYMENT_TTL": "1h"}, wantErr: "PAYMENTS_PAYMENT_TTL"},
		{name: "negative payment ttl", env: map[string]string{"PAYMENTS_PAYMENT_TTL": "-1h"}, wantErr: "PAYMENTS_PAYMENT_TTL"},
		{name: "zero shutdown timeout", env: map[string]string{"PAYMENTS_SHUTDOWN_TIMEOUT": "0s"}, wantErr: "PAYMENTS_SHUTDOWN_TIMEOUT"},
		{name: "sub-millisecond idempotency ttl", env: map[string]string{"PAYMENTS_IDEMPOTENCY_TTL": "10us"}, wantErr: "at least 1ms"},
		{name: "zero receive limit", env: map[string]string{"PAYMENTS_GRPC_MAX_RECV_BYTES": "0"}, wantErr: "PAYMENTS_GRPC_MAX_RECV_BYTES"},
		{name: "sentinel needs a master name", env: map[string]string{"PAYMENTS_REDIS_MODE": "sentinel", "PAYMENTS_REDIS_ADDRS": "s:26379"}, wantErr: "PAYMENTS_REDIS_MASTER_NAME"},
		{name: "unknown redis mode", env: map[string]string{"PAYMENTS_REDIS_MODE": "ring"}, wantErr: "PAYMENTS_REDIS_MODE"},
		{name: "single mode with two addresses", env: map[string]string{"PAYMENTS_REDIS_MODE": "single", "PAYMENTS_REDIS_ADDRS": "a:1,b:2"}, wantErr: "one address"},
		{name: "negative pool size", env: map[string]string{"PAYMENTS_REDIS_POOL_SIZE": "-1"}, wantErr: "PAYMENTS_REDIS_POOL_SIZE"},
		{name: "negative connection lifetime", env: map[string]string{"PAYMENTS_REDIS_CONN_MAX_LIFETIME": "-1s"}, wantErr: "PAYMENTS_REDIS_CONN_MAX_LIFETIME"},
		{name: "negative db", env: map[string]string{"PAYMENTS_REDIS_DB": "-1"}, wantErr: "PAYMENTS_REDIS_DB"},
		{name: "replica acks", env: map[string]string{"PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_REDIS_MIN_REPLICA_ACKS": "2", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "100ms", "PAYMENTS_REDIS_ACK_COMMAND": "waitaof"},
			check: func(t *testing.T, c Config) {
				got := [3]any{c.Redis.MinReplicaAcks, c.Redis.ReplicaAckTimeout, c.Redis.AckCommand}
				if want := [3]any{2, 100 * time.Millisecond, "waitaof"}; got != want {
					t.Errorf("got acks, timeout, command %v, want %v", got, want)
				}
			}},
		{name: "ack timeout just below the read timeout", env: map[string]string{"PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_REDIS_MIN_REPLICA_ACKS": "1", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "499ms"}},
		{name: "ack timeout at the read timeout", env: map[string]string{"PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_REDIS_MIN_REPLICA_ACKS": "1", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "500ms"}, wantErr: "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT (500ms) must be below PAYMENTS_REDIS_READ_TIMEOUT (500ms)"},
		{name: "ack timeout above a raised read timeout is refused", env: map[string]string{"PAYMENTS_REDIS_ADDRS": "redis:6379", "PAYMENTS_REDIS_MIN_REPLICA_ACKS": "1", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "2s", "PAYMENTS_REDIS_READ_TIMEOUT": "1s"}, wantErr: "must be below PAYMENTS_REDIS_READ_TIMEOUT (1s)"},
		{name: "ack timeout is not tied to the read timeout while acks are off", env: map[string]string{"PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "2s"}},
		{name: "tls files", env: map[string]string{"PAYMENTS_TLS_CERT_FILE": "/tls/tls.crt", "PAYMENTS_TLS_KEY_FILE": "/tls/tls.key", "PAYMENTS_TLS_CLIENT_CA_FILE": "/tls/ca.crt"},
			check: func(t *testing.T, c Config) {
				if !c.TLS.Enabled() || c.TLS.ClientCAFile != "/tls/ca.crt" {
					t.Errorf("got TLS %+v, want it enabled with the client CA", c.TLS)
				}
			}},
		{name: "tls cert without key", env: map[string]string{"PAYMENTS_TLS_CERT_FILE": "/tls/tls.crt"}, wantErr: "PAYMENTS_TLS_CERT_FILE and PAYMENTS_TLS_KEY_FILE must be set together"},
		{name: "tls key without cert", env: map[string]string{"PAYMENTS_TLS_KEY_FILE": "/tls/tls.key"}, wantErr: "must be set together"},
		{name: "client CA without tls", env: map[string]string{"PAYMENTS_TLS_CLIENT_CA_FILE": "/tls/ca.crt"}, wantErr: "PAYMENTS_TLS_CLIENT_CA_FILE needs"},
		{name: "negative replica acks", env: map[string]string{"PAYMENTS_REDIS_MIN_REPLICA_ACKS": "-1"}, wantErr: "PAYMENTS_REDIS_MIN_REPLICA_ACKS must not be negative"},
		{name: "replica acks on the embedded store", env: map[string]string{"PAYMENTS_REDIS_MIN_REPLICA_ACKS": "1"}, wantErr: "PAYMENTS_REDIS_MIN_REPLICA_ACKS needs PAYMENTS_REDIS_ADDRS"},
		{name: "zero ack timeout", env: map[string]string{"PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "0s"}, wantErr: "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT must be at least 1ms"},
		{name: "sub-millisecond ack timeout", env: map[string]string{"PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT": "500us"}, wantErr: "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT must be at least 1ms"},
		{name: "unknown ack command", env: map[string]string{"PAYMENTS_REDIS_ACK_COMMAND": "fsync"}, wantErr: `PAYMENTS_REDIS_ACK_COMMAND must be wait or waitaof, got "fsync"`},
		{name: "ack command is case sensitive", env: map[string]string{"PAYMENTS_REDIS_ACK_COMMAND": "WAIT"}, wantErr: "PAYMENTS_REDIS_ACK_COMMAND"},
		{name: "bad replica acks number", env: map[string]string{"PAYMENTS_REDIS_MIN_REPLICA_ACKS": "one"}, wantErr: "PAYMENTS_REDIS_MIN_REPLICA_ACKS"},
		{name: "two webhook secrets for rotation", env: map[string]string{"PAYMENTS_WEBHOOK_SECRETS": testSecret + ",whsec_b3RoZXItc2VjcmV0LWZvci1yb3RhdGlvbi10ZXN0cw=="},
			check: func(t *testing.T, c Config) {
				if got := len(c.Webhook.keys()); got != 2 {
					t.Errorf("decoded %d webhook keys, want 2", got)
				}
			}},
		{name: "no webhook secret", env: map[string]string{"PAYMENTS_WEBHOOK_SECRETS": ""}, wantErr: "PAYMENTS_WEBHOOK_SECRETS is required"},
		{name: "webhook secret without prefix", env: map[string]string{"PAYMENTS_WEBHOOK_SECRETS": "c2VjcmV0"}, wantErr: "PAYMENTS_WEBHOOK_SECRETS entry 1"},
		{name: "short webhook secret", env: map[string]string{"PAYMENTS_WEBHOOK_SECRETS": "whsec_c2hvcnQ="}, wantErr: "at least 24 bytes"},
		{name: "zero webhook tolerance", env: map[string]string{"PAYMENTS_WEBHOOK_TOLERANCE": "0s"}, wantErr: "PAYMENTS_WEBHOOK_TOLERANCE"},
		{name: "every error reported", env: map[string]string{"PAYMENTS_REDIS_MODE": "ring", "PAYMENTS_ENVIRONMENT": "qa"}, wantErr: "PAYMENTS_REDIS_MODE must be auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, set := tt.env["PAYMENTS_WEBHOOK_SECRETS"]; !set {
				t.Setenv("PAYMENTS_WEBHOOK_SECRETS", testSecret)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := LoadConfig()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig() error = %v, want nil", err)
				}
				if tt.check != nil {
					tt.check(t, cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadConfig() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPrintUsageListsEveryVariable(t *testing.T) {
	var buf bytes.Buffer
	if err := PrintUsage(&buf); err != nil {
		t.Fatalf("PrintUsage() error = %v", err)
	}
	for _, v := range []string{"PAYMENTS_GRPC_ADDR", "PAYMENTS_IDEMPOTENCY_TTL", "PAYMENTS_REDIS_ADDRS", "PAYMENTS_REDIS_MODE", "PAYMENTS_SHUTDOWN_TIMEOUT", "PAYMENTS_REDIS_MIN_REPLICA_ACKS", "PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT", "PAYMENTS_REDIS_ACK_COMMAND", "24h", ":50051"} {
		if !strings.Contains(buf.String(), v) {
			t.Errorf("PrintUsage() output lacks %q", v)
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	if err := UnknownVariables(); err != nil {
		t.Fatalf("UnknownVariables() with a clean environment = %v, want nil", err)
	}
	t.Setenv("PAYMENTS_REDIS_ADDR", "typo:6379")
	if err := UnknownVariables(); err == nil || !strings.Contains(err.Error(), "PAYMENTS_REDIS_ADDR") {
		t.Errorf("UnknownVariables() = %v, want it to name PAYMENTS_REDIS_ADDR", err)
	}
}

func TestRedisTLSConfig(t *testing.T) {
	if cfg, err := (RedisConfig{}).tlsConfig(); cfg != nil || err != nil {
		t.Errorf("tlsConfig() with TLS off = %v, %v, want nil, nil", cfg, err)
	}
	cfg, err := (RedisConfig{TLS: true, TLSServerName: "redis.internal"}).tlsConfig()
	if err != nil || cfg.ServerName != "redis.internal" {
		t.Errorf("tlsConfig() = %v, %v, want server name redis.internal", cfg, err)
	}
	if _, err := (RedisConfig{TLS: true, TLSCAFile: "/does/not/exist"}).tlsConfig(); err == nil || !strings.Contains(err.Error(), "PAYMENTS_REDIS_TLS_CA_FILE") {
		t.Errorf("tlsConfig() with a missing CA file = %v, want an error naming PAYMENTS_REDIS_TLS_CA_FILE", err)
	}
	notPEM := t.TempDir() + "/ca.pem"
	writeFile(t, notPEM, "not a certificate")
	if _, err := (RedisConfig{TLS: true, TLSCAFile: notPEM}).tlsConfig(); err == nil {
		t.Errorf("tlsConfig() with a non-PEM CA file = nil error, want one")
	}
}

func TestRedisClientKindFollowsMode(t *testing.T) {
	tests := []struct {
		name  string
		redis RedisConfig
		want  string
	}{
		{name: "auto, one address", redis: RedisConfig{Mode: "auto", Addrs: []string{"127.0.0.1:1"}}, want: "*redis.Client"},
		{name: "auto, several addresses", redis: RedisConfig{Mode: "auto", Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, want: "*redis.ClusterClient"},
		{name: "single ignores a master name", redis: RedisConfig{Mode: "single", Addrs: []string{"127.0.0.1:1"}, MasterName: "mymaster"}, want: "*redis.Client"},
		{name: "cluster with one address", redis: RedisConfig{Mode: "cluster", Addrs: []string{"127.0.0.1:1"}}, want: "*redis.ClusterClient"},
		{name: "sentinel", redis: RedisConfig{Mode: "sentinel", Addrs: []string{"127.0.0.1:1"}, MasterName: "mymaster"}, want: "*redis.Client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("")
			tt.redis.DialTimeout, tt.redis.ReadTimeout, tt.redis.WriteTimeout = time.Second, time.Second, time.Second
			cfg.Redis = tt.redis
			client, stop, err := newRedisClient(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			if err != nil {
				t.Fatalf("newRedisClient() error = %v", err)
			}
			defer stop()
			if got := fmt.Sprintf("%T", client); got != tt.want {
				t.Errorf("client type = %s, want %s", got, tt.want)
			}
		})
	}
	cfg := testConfig("")
	cfg.Redis.TLS, cfg.Redis.TLSCAFile = true, "/does/not/exist"
	if _, _, err := newRedisClient(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil))); err == nil {
		t.Errorf("newRedisClient() with an unreadable CA file = nil error, want one")
	}
}

// TestRedisHandshakeIsClean pins the client options that keep go-redis's
// connection handshake from sending commands older Redis versions and the
// embedded store refuse, which would count as Redis errors on every dial.
func TestRedisHandshakeIsClean(t *testing.T) {
	cfg := testConfig("")
	client, stop, err := newRedisClient(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	m := metrics.New()
	client.AddHook(m.RedisHook())
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Ping() error = %v", err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "redis_errors_total 0") {
		t.Errorf("a fresh connection counted Redis errors:\n%s", rec.Body.String())
	}
}
