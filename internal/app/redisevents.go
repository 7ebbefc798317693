package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// failoverReplies maps the error replies a failover or a resharding produces
// to their event names. go-redis follows MOVED and ASK and redials after
// READONLY by itself; the hook only makes them visible.
var failoverReplies = map[string]string{
	"READONLY":    "readonly",
	"MOVED":       "moved",
	"ASK":         "ask",
	"CLUSTERDOWN": "clusterdown",
	"TRYAGAIN":    "tryagain",
	"MASTERDOWN":  "masterdown",
	"LOADING":     "loading",
	"NOREPLICAS":  "noreplicas",
}

// eventLogEvery bounds the log to one line per event kind per interval: a
// failover produces thousands of READONLY or MOVED replies in a second.
const eventLogEvery = 10 * time.Second

// redisEvents is a go-redis hook that counts and logs what a Redis failover
// looks like from this replica: connections opened and refused, a new master
// behind Sentinel, and failover replies. It never changes a result.
type redisEvents struct {
	observe func(event string)
	log     *slog.Logger
	// trackMaster is set where every connection goes to the one master
	// (single node, Sentinel), so a new remote address is a new master.
	trackMaster bool
	now         func() time.Time

	mu         sync.Mutex
	master     string
	lastLogged map[string]time.Time
	unlogged   map[string]int
}

func newRedisEvents(observe func(string), log *slog.Logger, trackMaster bool) *redisEvents {
	return &redisEvents{
		observe: observe, log: log, trackMaster: trackMaster, now: time.Now,
		lastLogged: map[string]time.Time{}, unlogged: map[string]int{},
	}
}

func (h *redisEvents) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			// Counted, not logged: the health monitor reports an outage
			// once, and go-redis dials in goroutines of its own that can
			// outlive the client, so a line here could follow shutdown.
			h.observe("connect_failed")
			return conn, err
		}
		remote := conn.RemoteAddr().String()
		h.observe("connect")
		if h.trackMaster {
			h.mu.Lock()
			was := h.master
			h.master = remote
			h.mu.Unlock()
			if was != "" && was != remote {
				// Rare and important: never rate-limited.
				h.observe("master_changed")
				h.log.WarnContext(ctx, "redis master changed", slog.String("from", was), slog.String("to", remote))
			}
		}
		return conn, nil
	}
}

func (h *redisEvents) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.reply(ctx, err)
		return err
	}
}

func (h *redisEvents) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		// One event per pipeline: its commands share the connection and
		// the reason.
		for _, cmd := range cmds {
			if h.reply(ctx, cmd.Err()) {
				break
			}
		}
		return err
	}
}

// reply records err if it is a failover reply, and reports whether it was.
func (h *redisEvents) reply(ctx context.Context, err error) bool {
	var re redis.Error
	if err == nil || !errors.As(err, &re) {
		return false
	}
	word, _, _ := strings.Cut(err.Error(), " ")
	event, ok := failoverReplies[word]
	if !ok {
		return false
	}
	h.event(ctx, event, slog.String("reply", err.Error()))
	return true
}

// event counts one event and logs it unless its kind was logged within
// eventLogEvery; the next line carries how many went unlogged.
func (h *redisEvents) event(ctx context.Context, event string, attrs ...slog.Attr) {
	h.observe(event)
	now := h.now()
	h.mu.Lock()
	if last, ok := h.lastLogged[event]; ok && now.Sub(last) < eventLogEvery {
		h.unlogged[event]++
		h.mu.Unlock()
		return
	}
	skipped := h.unlogged[event]
	h.lastLogged[event], h.unlogged[event] = now, 0
	h.mu.Unlock()
	attrs = append(attrs, slog.String("event", event), slog.Int("since_last_line", skipped))
	h.log.LogAttrs(ctx, slog.LevelWarn, "redis topology event", attrs...)
}
