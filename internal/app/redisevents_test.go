package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// replyError is an error reply as go-redis returns it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// addrConn is a connection that only knows its remote address.
type addrConn struct {
	net.Conn
	remote string
}

func (c addrConn) RemoteAddr() net.Addr {
	a, _ := net.ResolveTCPAddr("tcp", c.remote)
	return a
}

type eventRecorder struct {
	counts map[string]int
	log    bytes.Buffer
	clock  time.Time
}

func newTestEvents(trackMaster bool) (*redisEvents, *eventRecorder) {
	rec := &eventRecorder{counts: map[string]int{}, clock: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	h := newRedisEvents(func(e string) { rec.counts[e]++ }, slog.New(slog.NewJSONHandler(&rec.log, nil)), trackMaster)
	h.now = func() time.Time { return rec.clock }
	return h, rec
}

func TestRedisEventsReplies(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want map[string]int
	}{
		{name: "readonly", err: replyError("READONLY You can't write against a read only replica."), want: map[string]int{"readonly": 1}},
		{name: "moved", err: replyError("MOVED 3999 127.0.0.1:6381"), want: map[string]int{"moved": 1}},
		{name: "ask", err: replyError("ASK 3999 127.0.0.1:6381"), want: map[string]int{"ask": 1}},
		{name: "noreplicas", err: replyError("NOREPLICAS Not enough good replicas to write."), want: map[string]int{"noreplicas": 1}},
		{name: "other error reply", err: replyError("ERR unknown command"), want: map[string]int{}},
		{name: "network error", err: errors.New("READONLY lookalike, but not a reply"), want: map[string]int{}},
		{name: "nil reply", err: redis.Nil, want: map[string]int{}},
		{name: "success", err: nil, want: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec := newTestEvents(false)
			got := h.ProcessHook(func(context.Context, redis.Cmder) error { return tt.err })(context.Background(), redis.NewCmd(context.Background(), "get", "k"))
			if !errors.Is(got, tt.err) {
				t.Errorf("hook returned %v, want the command's own %v", got, tt.err)
			}
			if diff := cmp.Diff(tt.want, rec.counts); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedisEventsPipelineCountsOnce(t *testing.T) {
	h, rec := newTestEvents(false)
	ctx := context.Background()
	cmds := []redis.Cmder{redis.NewCmd(ctx, "evalsha"), redis.NewCmd(ctx, "wait")}
	for _, c := range cmds {
		c.SetErr(replyError("READONLY You can't write against a read only replica."))
	}
	_ = h.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return cmds[0].Err() })(ctx, cmds)
	if got := rec.counts["readonly"]; got != 1 {
		t.Errorf("got %d readonly events for one pipeline, want 1", got)
	}
}

func TestRedisEventsLogIsRateLimited(t *testing.T) {
	h, rec := newTestEvents(false)
	ctx := context.Background()
	moved := func() {
		_ = h.ProcessHook(func(context.Context, redis.Cmder) error { return replyError("MOVED 1 a:1") })(ctx, redis.NewCmd(ctx, "get"))
	}
	for range 100 {
		moved()
	}
	if got := strings.Count(rec.log.String(), "redis topology event"); got != 1 {
		t.Fatalf("got %d log lines for 100 events within %s, want 1", got, eventLogEvery)
	}
	rec.clock = rec.clock.Add(eventLogEvery)
	moved()
	lines := strings.Split(strings.TrimSpace(rec.log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"since_last_line":99`) {
		t.Errorf("got log\n%s\nwant a second line carrying the 99 unlogged events", rec.log.String())
	}
	if got := rec.counts["moved"]; got != 101 {
		t.Errorf("got %d moved events counted, want all 101", got)
	}
}

func TestRedisEventsMasterChange(t *testing.T) {
	tests := []struct {
		name        string
		trackMaster bool
		dials       []string
		wantChanged int
	}{
		{name: "same master", trackMaster: true, dials: []string{"127.0.0.2:6379", "127.0.0.2:6379"}, wantChanged: 0},
		{name: "failover", trackMaster: true, dials: []string{"127.0.0.2:6379", "127.0.0.3:6379", "127.0.0.3:6379"}, wantChanged: 1},
		{name: "cluster nodes are not masters changing", trackMaster: false, dials: []string{"127.0.0.2:6379", "127.0.0.3:6379"}, wantChanged: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec := newTestEvents(tt.trackMaster)
			for _, addr := range tt.dials {
				dial := h.DialHook(func(context.Context, string, string) (net.Conn, error) { return addrConn{remote: addr}, nil })
				if _, err := dial(context.Background(), "tcp", "sentinel-chosen"); err != nil {
					t.Fatal(err)
				}
			}
			if got := rec.counts["master_changed"]; got != tt.wantChanged {
				t.Errorf("got %d master_changed, want %d", got, tt.wantChanged)
			}
			if got := rec.counts["connect"]; got != len(tt.dials) {
				t.Errorf("got %d connect events, want %d", got, len(tt.dials))
			}
			if logged := strings.Contains(rec.log.String(), "redis master changed"); logged != (tt.wantChanged > 0) {
				t.Errorf("master change logged = %v, want %v:\n%s", logged, tt.wantChanged > 0, rec.log.String())
			}
		})
	}
}

func TestRedisEventsDialFailure(t *testing.T) {
	h, rec := newTestEvents(true)
	wantErr := errors.New("connection refused")
	_, err := h.DialHook(func(context.Context, string, string) (net.Conn, error) { return nil, wantErr })(context.Background(), "tcp", "127.0.0.2:6379")
	if !errors.Is(err, wantErr) {
		t.Errorf("got %v, want the dial's own error", err)
	}
	if diff := cmp.Diff(map[string]int{"connect_failed": 1}, rec.counts); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if rec.log.Len() != 0 {
		t.Errorf("a failed dial logged %q, want only the count (the health monitor reports outages)", rec.log.String())
	}
}
