package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/payments-svc/payments-svc/internal/ratelimit"
	"github.com/payments-svc/payments-svc/internal/webhook"
)

// EnvPrefix prefixes every environment variable of the service.
const EnvPrefix = "PAYMENTS"

// Config is the whole configuration, read from PAYMENTS_* variables.
type Config struct {
	Environment      string        `envconfig:"ENVIRONMENT" default:"development" desc:"development or production; production refuses the embedded store"`
	GRPCAddr         string        `envconfig:"GRPC_ADDR" default:":50051" desc:"gRPC listen address"`
	HTTPAddr         string        `envconfig:"HTTP_ADDR" default:":8080" desc:"public HTTP listen address: the provider webhook only"`
	AdminAddr        string        `envconfig:"ADMIN_ADDR" default:":9090" desc:"private admin HTTP listen address: /metrics, /healthz, /readyz and pprof; keep it off ingresses"`
	Pprof            bool          `envconfig:"PPROF" default:"false" desc:"serve the Go runtime profiles under /debug/pprof/ on the admin port"`
	GRPCReflection   bool          `envconfig:"GRPC_REFLECTION" default:"true" desc:"register gRPC server reflection (for grpcurl)"`
	GRPCMaxRecvBytes int           `envconfig:"GRPC_MAX_RECV_BYTES" default:"65536" desc:"largest request message accepted, in bytes"`
	LogLevel         slog.Level    `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFlushInterval time.Duration `envconfig:"LOG_FLUSH_INTERVAL" default:"100ms" desc:"log lines are written in batches at least this often; 0 writes each line at once"`
	ShutdownTimeout  time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"15s" desc:"how long in-flight calls may finish after SIGTERM"`
	IdempotencyTTL   time.Duration `envconfig:"IDEMPOTENCY_TTL" default:"24h" desc:"how long an idempotency key is remembered"`
	PaymentTTL       time.Duration `envconfig:"PAYMENT_TTL" default:"0s" desc:"how long payments are kept; 0 keeps them forever"`
	HealthInterval   time.Duration `envconfig:"HEALTH_INTERVAL" default:"1s" desc:"how often Redis is pinged for health"`
	ReloadInterval   time.Duration `envconfig:"RELOAD_INTERVAL" default:"5s" desc:"how often the keys file and the TLS files are checked for changes"`
	RateLimits       string        `envconfig:"RATE_LIMITS" desc:"per-merchant quotas as JSON, e.g. {\"default\":{\"create\":{\"perSecond\":100,\"burst\":200}},\"merchants\":{\"m_1\":{\"get\":{\"perSecond\":0,\"burst\":0}}}}; perSecond 0 is unlimited; empty: create 100/s burst 200, get 500/s burst 1000"`
	Auth             AuthConfig    `envconfig:"AUTH"`
	TLS              TLSConfig     `envconfig:"TLS"`
	Redis            RedisConfig   `envconfig:"REDIS"`
	Webhook          WebhookConfig `envconfig:"WEBHOOK"`
}

// AuthConfig says how callers prove which merchant they are.
type AuthConfig struct {
	KeysFile string `envconfig:"KEYS_FILE" desc:"file of \"<merchant_id> sha256:<hex>\" lines granting API keys (payments-svc apikey new prints one); re-read on change. Unset in development: the public dev key is accepted for merchant m_dev"`
}

// TLSConfig holds the server's transport security.
type TLSConfig struct {
	CertFile     string `envconfig:"CERT_FILE" desc:"PEM certificate chain: gRPC and the public HTTP port serve TLS; re-read on change, so cert-manager can rotate it"`
	KeyFile      string `envconfig:"KEY_FILE" desc:"PEM private key of PAYMENTS_TLS_CERT_FILE"`
	ClientCAFile string `envconfig:"CLIENT_CA_FILE" desc:"PEM CA bundle for client certificates (mTLS): a certificate that is given must verify, and its spiffe://<domain>/merchant/<id> URI SAN identifies the merchant; clients without one still connect with an API key"`
	Mesh         bool   `envconfig:"MESH" default:"false" desc:"a service mesh terminates TLS in front of this server; the only way to serve plaintext gRPC in production"`
}

// Enabled reports whether the server serves TLS itself.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// DevAuth reports whether the public development key is in force: a
// development server with neither a keys file nor a client CA.
func (c Config) DevAuth() bool {
	return c.Environment == "development" && c.Auth.KeysFile == "" && c.TLS.ClientCAFile == ""
}

// WebhookConfig holds the provider webhook settings.
type WebhookConfig struct {
	Secrets   []string      `envconfig:"SECRETS" desc:"required: comma-separated whsec_<base64> secrets; any of them may sign (rotation)"`
	Tolerance time.Duration `envconfig:"TOLERANCE" default:"5m" desc:"how far a webhook-timestamp may be from now"`
}

// webhookKeys decodes the secrets. Validate has already checked them.
func (w WebhookConfig) keys() [][]byte {
	keys := make([][]byte, 0, len(w.Secrets))
	for _, s := range w.Secrets {
		if k, err := webhook.ParseSecret(s); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}

// RedisConfig selects and tunes the Redis client.
type RedisConfig struct {
	Addrs            []string      `envconfig:"ADDRS" desc:"comma-separated host:port list; empty runs an embedded in-process store"`
	Mode             string        `envconfig:"MODE" default:"auto" desc:"auto, single, sentinel or cluster"`
	MasterName       string        `envconfig:"MASTER_NAME" desc:"Sentinel master name (mode sentinel)"`
	Username         string        `envconfig:"USERNAME" desc:"ACL user name"`
	Password         string        `envconfig:"PASSWORD" desc:"password"`
	SentinelPassword string        `envconfig:"SENTINEL_PASSWORD" desc:"Sentinel password"`
	DB               int           `envconfig:"DB" default:"0" desc:"database number (not in cluster mode)"`
	TLS              bool          `envconfig:"TLS" default:"false" desc:"connect with TLS"`
	TLSServerName    string        `envconfig:"TLS_SERVER_NAME" desc:"server name to verify, if not the host"`
	TLSCAFile        string        `envconfig:"TLS_CA_FILE" desc:"PEM CA bundle to trust instead of the system roots"`
	DialTimeout      time.Duration `envconfig:"DIAL_TIMEOUT" default:"2s" desc:"connect timeout"`
	ReadTimeout      time.Duration `envconfig:"READ_TIMEOUT" default:"500ms" desc:"reply timeout"`
	WriteTimeout     time.Duration `envconfig:"WRITE_TIMEOUT" default:"500ms" desc:"send timeout"`
	PoolSize         int           `envconfig:"POOL_SIZE" default:"0" desc:"connections per node; 0 is 10 per CPU"`
	// Every new connection asks Sentinel (or the cluster map) where the
	// master is, so recycling connections bounds how long a replica that
	// missed the switch notice keeps writing to a demoted master.
	ConnMaxLifetime time.Duration `envconfig:"CONN_MAX_LIFETIME" default:"2s" desc:"close and redial each connection after this long, so a missed failover notice cannot pin writes to a demoted master; 0 keeps connections forever"`
	// Acknowledgements trade latency for durability across failover; see
	// ARCHITECTURE.md, "Where idempotency ends".
	MinReplicaAcks    int           `envconfig:"MIN_REPLICA_ACKS" default:"0" desc:"replicas that must acknowledge a create or settlement before it is answered; 0 answers without waiting"`
	ReplicaAckTimeout time.Duration `envconfig:"REPLICA_ACK_TIMEOUT" default:"250ms" desc:"how long to wait for those acknowledgements; must be below PAYMENTS_REDIS_READ_TIMEOUT"`
	AckCommand        string        `envconfig:"ACK_COMMAND" default:"wait" desc:"wait (replicas received the write) or waitaof (the primary's and replicas' AOF fsynced it; Redis 7.2+, appendonly yes)"`
}

// Embedded reports whether the in-process store is used.
func (c Config) Embedded() bool { return len(c.Redis.Addrs) == 0 }

// LoadConfig reads the configuration from the environment and validates it.
// Errors name the variable at fault.
func LoadConfig() (Config, error) {
	var cfg Config
	if err := envconfig.Process(EnvPrefix, &cfg); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// UnknownVariables lists set PAYMENTS_* variables that no setting reads,
// which are usually typos.
func UnknownVariables() error {
	return envconfig.CheckDisallowed(EnvPrefix, &Config{})
}

// PrintUsage writes every variable with its default and meaning.
func PrintUsage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	format := "VARIABLE\tDEFAULT\tDESCRIPTION\n{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef(EnvPrefix, &Config{}, tw, format); err != nil {
		return err
	}
	return tw.Flush()
}

// Validate checks what envconfig cannot: ranges, enumerations and the
// relations between settings.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Environment != "development" && c.Environment != "production" {
		bad("PAYMENTS_ENVIRONMENT must be development or production, got %q", c.Environment)
	}
	if c.Environment == "production" && c.Embedded() {
		bad("PAYMENTS_REDIS_ADDRS is required when PAYMENTS_ENVIRONMENT is production: the embedded store keeps data in memory only")
	}
	if c.Environment == "production" && c.Auth.KeysFile == "" && c.TLS.ClientCAFile == "" {
		bad("PAYMENTS_AUTH_KEYS_FILE or PAYMENTS_TLS_CLIENT_CA_FILE is required when PAYMENTS_ENVIRONMENT is production: the development key is public")
	}
	if c.Environment == "production" && !c.TLS.Enabled() && !c.TLS.Mesh {
		bad("PAYMENTS_TLS_CERT_FILE is required when PAYMENTS_ENVIRONMENT is production, unless PAYMENTS_TLS_MESH=true states that a service mesh terminates TLS: API keys must not cross the network in plaintext")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("PAYMENTS_TLS_CERT_FILE and PAYMENTS_TLS_KEY_FILE must be set together")
	}
	if c.TLS.ClientCAFile != "" && !c.TLS.Enabled() {
		bad("PAYMENTS_TLS_CLIENT_CA_FILE needs PAYMENTS_TLS_CERT_FILE: client certificates are verified in the server's own TLS handshake")
	}
	if _, err := ratelimit.Parse(c.RateLimits); err != nil {
		bad("PAYMENTS_RATE_LIMITS: %v", err)
	}
	if c.ReloadInterval <= 0 {
		bad("PAYMENTS_RELOAD_INTERVAL must be positive, got %s", c.ReloadInterval)
	}
	if c.GRPCMaxRecvBytes <= 0 {
		bad("PAYMENTS_GRPC_MAX_RECV_BYTES must be positive, got %d", c.GRPCMaxRecvBytes)
	}
	for name, d := range map[string]time.Duration{
		"PAYMENTS_SHUTDOWN_TIMEOUT":    c.ShutdownTimeout,
		"PAYMENTS_IDEMPOTENCY_TTL":     c.IdempotencyTTL,
		"PAYMENTS_HEALTH_INTERVAL":     c.HealthInterval,
		"PAYMENTS_REDIS_DIAL_TIMEOUT":  c.Redis.DialTimeout,
		"PAYMENTS_REDIS_READ_TIMEOUT":  c.Redis.ReadTimeout,
		"PAYMENTS_REDIS_WRITE_TIMEOUT": c.Redis.WriteTimeout,
	} {
		if d <= 0 {
			bad("%s must be positive, got %s", name, d)
		}
	}
	if c.IdempotencyTTL > 0 && c.IdempotencyTTL < time.Millisecond {
		bad("PAYMENTS_IDEMPOTENCY_TTL must be at least 1ms, got %s", c.IdempotencyTTL)
	}
	if c.PaymentTTL < 0 || (c.PaymentTTL > 0 && c.PaymentTTL < c.IdempotencyTTL) {
		bad("PAYMENTS_PAYMENT_TTL must be 0 (keep forever) or at least PAYMENTS_IDEMPOTENCY_TTL (%s), got %s: a replay must never point at a deleted payment", c.IdempotencyTTL, c.PaymentTTL)
	}
	switch c.Redis.Mode {
	case "auto", "single", "cluster":
	case "sentinel":
		if c.Redis.MasterName == "" {
			bad("PAYMENTS_REDIS_MASTER_NAME is required when PAYMENTS_REDIS_MODE is sentinel")
		}
	default:
		bad("PAYMENTS_REDIS_MODE must be auto, single, sentinel or cluster, got %q", c.Redis.Mode)
	}
	if c.Redis.Mode == "single" && len(c.Redis.Addrs) > 1 {
		bad("PAYMENTS_REDIS_ADDRS must hold one address when PAYMENTS_REDIS_MODE is single, got %d", len(c.Redis.Addrs))
	}
	if c.Redis.ConnMaxLifetime < 0 {
		bad("PAYMENTS_REDIS_CONN_MAX_LIFETIME must not be negative, got %s", c.Redis.ConnMaxLifetime)
	}
	if c.Redis.PoolSize < 0 {
		bad("PAYMENTS_REDIS_POOL_SIZE must not be negative, got %d", c.Redis.PoolSize)
	}
	if c.Redis.DB < 0 {
		bad("PAYMENTS_REDIS_DB must not be negative, got %d", c.Redis.DB)
	}
	c.Redis.validateAcks(c.Embedded(), bad)
	if len(c.Webhook.Secrets) == 0 {
		bad("PAYMENTS_WEBHOOK_SECRETS is required: the server refuses to accept provider events it cannot verify (for local runs, make run sets a dev-only secret)")
	}
	for i, sec := range c.Webhook.Secrets {
		// The error names the position, never the secret.
		if _, err := webhook.ParseSecret(sec); err != nil {
			bad("PAYMENTS_WEBHOOK_SECRETS entry %d %v", i+1, err)
		}
	}
	if c.Webhook.Tolerance <= 0 {
		bad("PAYMENTS_WEBHOOK_TOLERANCE must be positive, got %s", c.Webhook.Tolerance)
	}
	return errors.Join(errs...)
}

// validateAcks checks the replica acknowledgement settings.
func (r RedisConfig) validateAcks(embedded bool, bad func(string, ...any)) {
	if r.MinReplicaAcks < 0 {
		bad("PAYMENTS_REDIS_MIN_REPLICA_ACKS must not be negative, got %d", r.MinReplicaAcks)
	}
	// WAIT takes whole milliseconds, and 0 would wait forever.
	if r.ReplicaAckTimeout < time.Millisecond {
		bad("PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT must be at least 1ms, got %s", r.ReplicaAckTimeout)
	}
	if r.AckCommand != "wait" && r.AckCommand != "waitaof" {
		bad("PAYMENTS_REDIS_ACK_COMMAND must be wait or waitaof, got %q", r.AckCommand)
	}
	if r.MinReplicaAcks <= 0 {
		return
	}
	if embedded {
		bad("PAYMENTS_REDIS_MIN_REPLICA_ACKS needs PAYMENTS_REDIS_ADDRS: the embedded store has no replicas, so every payment would fail")
	}
	// The script's reply and the wait's arrive as one read: a wait that
	// outlasts the read timeout would fail as a timeout instead of saying how
	// many replicas acknowledged.
	if r.ReadTimeout > 0 && r.ReplicaAckTimeout >= r.ReadTimeout {
		bad("PAYMENTS_REDIS_REPLICA_ACK_TIMEOUT (%s) must be below PAYMENTS_REDIS_READ_TIMEOUT (%s): the script and the wait for replicas share one reply, which must arrive within the read timeout", r.ReplicaAckTimeout, r.ReadTimeout)
	}
}

// tlsConfig builds the client TLS settings, or nil when TLS is off.
func (r RedisConfig) tlsConfig() (*tls.Config, error) {
	if !r.TLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.TLSServerName}
	if r.TLSCAFile != "" {
		pem, err := os.ReadFile(r.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("PAYMENTS_REDIS_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("PAYMENTS_REDIS_TLS_CA_FILE: no PEM certificates in %s", r.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
