// Package ratelimit owns the per-merchant request quotas of payments-svc:
// their configuration (a default and per-merchant overrides, per operation)
// and their enforcement in Redis with GCRA (github.com/go-redis/redis_rate),
// so every replica draws on the same quota.
package ratelimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// Op names a rate-limited operation.
type Op string

// The limited operations.
const (
	OpCreate Op = "create"
	OpGet    Op = "get"
)

// Limit is a sustained rate with a burst. PerSecond 0 means unlimited.
type Limit struct {
	PerSecond int `json:"perSecond"`
	Burst     int `json:"burst"`
}

// Unlimited reports whether the limit admits everything.
func (l Limit) Unlimited() bool { return l.PerSecond == 0 }

func (l Limit) String() string {
	if l.Unlimited() {
		return "unlimited"
	}
	return strconv.Itoa(l.PerSecond) + " per second, burst " + strconv.Itoa(l.Burst)
}

// Limits are the limits of one merchant, per operation; a missing operation
// takes the default's.
type Limits struct {
	Create *Limit `json:"create,omitempty"`
	Get    *Limit `json:"get,omitempty"`
}

// Config is the whole quota configuration, as PAYMENTS_RATE_LIMITS holds it
// in JSON.
type Config struct {
	Default   Limits            `json:"default"`
	Merchants map[string]Limits `json:"merchants,omitempty"`
}

// DefaultConfig is used when no configuration is given.
func DefaultConfig() Config {
	return Config{Default: Limits{
		Create: &Limit{PerSecond: 100, Burst: 200},
		Get:    &Limit{PerSecond: 500, Burst: 1000},
	}}
}

// Parse reads a JSON configuration; fields left out of "default" keep
// DefaultConfig's values. Unknown fields are errors, so a typo cannot
// silently lift a limit.
func Parse(s string) (Config, error) {
	cfg := DefaultConfig()
	if s == "" {
		return cfg, nil
	}
	var in Config
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Config{}, fmt.Errorf("rate limits: %w", err)
	}
	if in.Default.Create != nil {
		cfg.Default.Create = in.Default.Create
	}
	if in.Default.Get != nil {
		cfg.Default.Get = in.Default.Get
	}
	cfg.Merchants = in.Merchants
	var errs []error
	check := func(who string, l *Limit) {
		if l != nil && (l.PerSecond < 0 || l.Burst < 0 || (l.PerSecond > 0 && l.Burst < 1)) {
			errs = append(errs, fmt.Errorf("rate limits: %s: perSecond must be 0 (unlimited) or positive with a burst of at least 1, got %d and %d", who, l.PerSecond, l.Burst))
		}
	}
	check("default.create", cfg.Default.Create)
	check("default.get", cfg.Default.Get)
	for m, l := range cfg.Merchants {
		check("merchants."+m+".create", l.Create)
		check("merchants."+m+".get", l.Get)
	}
	return cfg, errors.Join(errs...)
}

// For returns the limit of merchant for op.
func (c Config) For(merchantID string, op Op) Limit {
	pick := func(l Limits) *Limit {
		if op == OpCreate {
			return l.Create
		}
		return l.Get
	}
	if l, ok := c.Merchants[merchantID]; ok {
		if v := pick(l); v != nil {
			return *v
		}
	}
	if v := pick(c.Default); v != nil {
		return *v
	}
	return Limit{}
}

// Decision is the answer to one request for quota.
type Decision struct {
	Allowed bool
	// RetryAfter is when the next request would be admitted, if refused.
	RetryAfter time.Duration
	Limit      Limit
}

// Limiter admits requests against the configured limits.
type Limiter struct {
	cfg  Config
	gcra *redis_rate.Limiter
}

// New returns a Limiter on an existing client. The caller owns the client.
func New(client redis.UniversalClient, cfg Config) *Limiter {
	return &Limiter{cfg: cfg, gcra: redis_rate.NewLimiter(client)}
}

// keyPrefix is appended to redis_rate's own "rate:" prefix. One key per
// merchant and operation: a script touches one key, so Cluster is fine.
const keyPrefix = "pmt:v2:"

// Allow takes one request from the merchant's quota for op. A failure to
// reach Redis wraps payments.ErrUnavailable: the request it guards would
// need Redis too, so refusing it loses nothing.
func (l *Limiter) Allow(ctx context.Context, merchantID string, op Op) (Decision, error) {
	lim := l.cfg.For(merchantID, op)
	if lim.Unlimited() {
		return Decision{Allowed: true, Limit: lim}, nil
	}
	res, err := l.gcra.Allow(ctx, keyPrefix+merchantID+":"+string(op), redis_rate.Limit{
		Rate: lim.PerSecond, Burst: lim.Burst, Period: time.Second,
	})
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return Decision{}, fmt.Errorf("rate limit: %w", err)
		}
		return Decision{}, fmt.Errorf("rate limit: %w: %w", payments.ErrUnavailable, err)
	}
	return Decision{Allowed: res.Allowed > 0, RetryAfter: res.RetryAfter, Limit: lim}, nil
}
