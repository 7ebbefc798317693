package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/payments-svc/payments-svc/internal/payments"
)

// run executes a script and returns its reply. With acknowledgements off it
// is go-redis's Script.Run: EVALSHA, then EVAL on NOSCRIPT. With them on, the
// script and the wait for replicas go out as one pipeline on one connection
// to the primary of keys[0], so a create is still one round trip and the wait
// counts exactly the writes of this connection.
//
// acknowledges tells the replies that confirm stored state, which must not
// be answered ahead of the replicas, from refusals, which confirm nothing.
// For those, fewer acknowledgements than required is an error wrapping
// payments.ErrUnavailable: the script ran on the primary, and a retry finds
// what it wrote. Errors are classified and name op.
func (r *Repository) run(ctx context.Context, op string, script *redis.Script, acknowledges func(reply []string) bool, keys []string, args ...any) ([]string, error) {
	if !r.acks() {
		res, err := script.Run(ctx, r.client, keys, args...).StringSlice()
		if err != nil {
			return nil, classify(op, err)
		}
		return res, nil
	}

	pipe, err := r.pipeline(ctx, keys[0])
	if err != nil {
		return nil, classify(op, err)
	}
	evalCmd, ack := r.send(ctx, pipe, script.EvalSha(ctx, pipe, keys, args...))
	// A pipeline has no EVAL fallback of its own. The script did not run, so
	// the wait covered no write of this call: the whole pipeline goes again.
	if redis.HasErrorPrefix(evalCmd.Err(), "NOSCRIPT") {
		evalCmd, ack = r.send(ctx, pipe, script.Eval(ctx, pipe, keys, args...))
	}
	if err := evalCmd.Err(); err != nil {
		return nil, r.nodeError(ctx, op, err)
	}
	res, err := evalCmd.StringSlice()
	if err != nil {
		return nil, classify(op, err)
	}
	if !acknowledges(res) {
		return res, nil
	}
	if err := ack.Err(); err != nil {
		return nil, ackError(op, err)
	}
	if ok, got := ack.met(r.opts.MinReplicaAcks); !ok {
		if r.opts.Observer != nil {
			r.opts.Observer.ObserveReplicaAckShortfall()
		}
		return nil, fmt.Errorf("%s: %w: written on the primary, but %s within %s, %d required",
			op, payments.ErrUnavailable, got, r.opts.AckTimeout, r.opts.MinReplicaAcks)
	}
	return res, nil
}

// pipeline returns a pipeline whose commands all go to the primary of key
// over one connection. A Cluster client would send the keyless WAIT to a
// random node, so the pipeline runs on the key's primary itself.
func (r *Repository) pipeline(ctx context.Context, key string) (redis.Pipeliner, error) {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		return node.Pipeline(), nil
	}
	return r.client.Pipeline(), nil
}

// nodeError classifies a failure of the pipeline. On a Cluster it went to
// one node's own client, which neither follows MOVED and ASK nor notices a
// failover as the Cluster client does: a redirect or a dead connection
// refreshes the slot map, and a redirect is retryable, since the caller's
// retry then goes to the slot's new primary.
func (r *Repository) nodeError(ctx context.Context, op string, err error) error {
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return classify(op, err)
	}
	if isRedirect(err) {
		cc.ReloadState(ctx)
		return fmt.Errorf("%s: %w: %w", op, payments.ErrUnavailable, err)
	}
	var reply redis.Error
	if !errors.As(err, &reply) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		cc.ReloadState(ctx)
	}
	return classify(op, err)
}

// isRedirect recognises the MOVED and ASK replies of a Cluster node.
func isRedirect(err error) bool {
	return redis.HasErrorPrefix(err, "MOVED ") || redis.HasErrorPrefix(err, "ASK ")
}

// send queues cmd's acknowledgement after it and executes the pipeline. The
// commands carry their own results and errors, so Exec's summary of them is
// not needed.
func (r *Repository) send(ctx context.Context, pipe redis.Pipeliner, evalCmd *redis.Cmd) (*redis.Cmd, ackCmd) {
	ack := r.ackCmd(ctx)
	_ = pipe.Process(ctx, ack.command())
	_, _ = pipe.Exec(ctx)
	return evalCmd, ack
}

// ackCmd builds the acknowledgement command. WAIT and WAITAOF are not part
// of go-redis's Pipeliner interface, so they are built here and queued with
// Process.
func (r *Repository) ackCmd(ctx context.Context) ackCmd {
	// A timeout of 0 would make Redis wait forever.
	ms := max(r.opts.AckTimeout.Milliseconds(), 1)
	if r.opts.AckCommand == AckWaitAOF {
		return waitAOFCmd{redis.NewIntSliceCmd(ctx, "waitaof", 1, r.opts.MinReplicaAcks, ms)}
	}
	return waitCmd{redis.NewIntCmd(ctx, "wait", r.opts.MinReplicaAcks, ms)}
}

// ackCmd is a queued WAIT or WAITAOF.
type ackCmd interface {
	command() redis.Cmder
	Err() error
	// met reports whether want replicas acknowledged, and what did.
	met(want int) (bool, string)
}

type waitCmd struct{ *redis.IntCmd }

func (c waitCmd) command() redis.Cmder { return c.IntCmd }

func (c waitCmd) met(want int) (bool, string) {
	n := c.Val()
	return n >= int64(want), fmt.Sprintf("%d replicas acknowledged", n)
}

type waitAOFCmd struct{ *redis.IntSliceCmd }

func (c waitAOFCmd) command() redis.Cmder { return c.IntSliceCmd }

// met also needs the primary's own fsync: WAITAOF answers [local, replicas].
func (c waitAOFCmd) met(want int) (bool, string) {
	v := c.Val()
	if len(v) != 2 {
		return false, fmt.Sprintf("WAITAOF answered %v", v)
	}
	return v[0] >= 1 && v[1] >= int64(want),
		fmt.Sprintf("%d local and %d replica AOF fsyncs were acknowledged", v[0], v[1])
}

// ackError wraps a failed acknowledgement command. A Redis that does not
// know WAITAOF, or runs without an AOF, refuses it on every call: that is a
// configuration error, not an outage, so it is not retryable.
func ackError(op string, err error) error {
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "unknown command") || strings.Contains(msg, "appendonly is disabled") {
			return fmt.Errorf("%s: %w: %w", op, ErrAckUnsupported, err)
		}
	}
	return classify(op, err)
}
