package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/payments"
)

func TestParse(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name    string
		in      string
		want    Config
		wantErr string
	}{
		{"empty is the default", "", def, ""},
		{"override one op", `{"default":{"create":{"perSecond":5,"burst":10}}}`,
			Config{Default: Limits{Create: &Limit{5, 10}, Get: def.Default.Get}}, ""},
		{"per merchant", `{"merchants":{"m_big":{"get":{"perSecond":0,"burst":0}}}}`,
			Config{Default: def.Default, Merchants: map[string]Limits{"m_big": {Get: &Limit{}}}}, ""},
		{"unknown field", `{"default":{"creat":{"perSecond":5,"burst":10}}}`, Config{}, "unknown field"},
		{"not json", `create=5`, Config{}, "rate limits"},
		{"negative", `{"default":{"get":{"perSecond":-1,"burst":1}}}`, Config{}, "default.get"},
		{"no burst", `{"merchants":{"m":{"create":{"perSecond":3,"burst":0}}}}`, Config{}, "merchants.m.create"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFor(t *testing.T) {
	cfg := Config{
		Default:   Limits{Create: &Limit{1, 2}},
		Merchants: map[string]Limits{"m_big": {Create: &Limit{10, 20}}, "m_get": {Get: &Limit{3, 3}}},
	}
	tests := []struct {
		merchant string
		op       Op
		want     Limit
	}{
		{"m_any", OpCreate, Limit{1, 2}},
		{"m_any", OpGet, Limit{}},
		{"m_big", OpCreate, Limit{10, 20}},
		{"m_get", OpCreate, Limit{1, 2}},
		{"m_get", OpGet, Limit{3, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.merchant+"/"+string(tt.op), func(t *testing.T) {
			if got := cfg.For(tt.merchant, tt.op); got != tt.want {
				t.Errorf("For() = %v, want %v", got, tt.want)
			}
		})
	}
	if got := (Limit{}).String(); got != "unlimited" {
		t.Errorf("Limit{}.String() = %q, want unlimited", got)
	}
}

func TestAllow(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.SetTime(time.Unix(1_800_000_000, 0))
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	l := New(client, Config{
		Default:   Limits{Create: &Limit{PerSecond: 2, Burst: 3}, Get: &Limit{}},
		Merchants: map[string]Limits{"m_b": {Create: &Limit{PerSecond: 1, Burst: 1}}},
	})
	ctx := context.Background()
	allow := func(m string, op Op) Decision {
		t.Helper()
		d, err := l.Allow(ctx, m, op)
		if err != nil {
			t.Fatalf("Allow(%s, %s) error = %v", m, op, err)
		}
		return d
	}

	for i := range 3 {
		if d := allow("m_a", OpCreate); !d.Allowed {
			t.Fatalf("call %d within the burst refused: %+v", i+1, d)
		}
	}
	d := allow("m_a", OpCreate)
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > time.Second || d.Limit != (Limit{2, 3}) {
		t.Errorf("call past the burst = %+v, want refused with 0 < RetryAfter <= 1s and the limit", d)
	}
	if d := allow("m_b", OpCreate); !d.Allowed {
		t.Errorf("another merchant was refused: %+v, want its own quota", d)
	}
	if d := allow("m_b", OpCreate); d.Allowed {
		t.Errorf("m_b's second call = %+v, want refused at its burst of 1", d)
	}
	mr.SetTime(time.Unix(1_800_000_000, 0).Add(500 * time.Millisecond))
	if d := allow("m_a", OpCreate); !d.Allowed {
		t.Errorf("call after one emission interval refused: %+v", d)
	}

	before := len(mr.Keys())
	for range 100 {
		if d := allow("m_a", OpGet); !d.Allowed {
			t.Fatalf("unlimited op refused: %+v", d)
		}
	}
	if got := len(mr.Keys()); got != before {
		t.Errorf("unlimited op wrote keys: %d, want %d", got, before)
	}
	for _, k := range mr.Keys() {
		if !strings.HasPrefix(k, "rate:pmt:v2:") {
			t.Errorf("key %q outside the service's namespace", k)
		}
	}

	mr.Close()
	if _, err := l.Allow(ctx, "m_a", OpCreate); !errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("Allow() with Redis down = %v, want ErrUnavailable", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Allow(cctx, "m_a", OpCreate); !errors.Is(err, context.Canceled) || errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("Allow() with a canceled context = %v, want context.Canceled only", err)
	}
}
