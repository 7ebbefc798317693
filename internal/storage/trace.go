package storage

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// AttrScript is the span attribute naming the Lua script an EVALSHA or EVAL
// ran: create.lua or settle.lua.
const AttrScript = "payments.script"

// scriptNames maps the SHA-1 and the source of each script to its file name.
var scriptNames = map[string]string{
	createScript.Hash(): "create.lua", createSource: "create.lua",
	settleScript.Hash(): "settle.lua", settleSource: "settle.lua",
}

// InstrumentTracing makes every command of client a span of tp, child of
// the span in the command's context: go-redis's own tracing hook
// (redisotel), without the command text (its arguments hold idempotency
// keys and metadata) and without caller lookups. redisotel names a span by
// its command alone, so every payment would show an anonymous "evalsha": a
// second hook, installed inside redisotel's on the same clients (the node
// clients of a Cluster), renames it "evalsha create.lua" or "evalsha
// settle.lua" and sets the payments.script attribute; a pipeline (the wait
// for replica acknowledgements) gets the attribute too.
func InstrumentTracing(client redis.UniversalClient, tp trace.TracerProvider) error {
	if err := redisotel.InstrumentTracing(client, redisotel.WithTracerProvider(tp),
		redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
		return fmt.Errorf("redis tracing: %w", err)
	}
	// Hooks run in the order they were added, so this one runs inside the
	// redisotel span, whose context it is given.
	if cc, ok := client.(*redis.ClusterClient); ok {
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(scriptNameHook{}) })
	} else {
		client.AddHook(scriptNameHook{})
	}
	return nil
}

type scriptNameHook struct{}

func (scriptNameHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (scriptNameHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			if name := scriptOf(cmd); name != "" {
				span.SetName(cmd.Name() + " " + name)
				span.SetAttributes(attribute.String(AttrScript, name))
			}
		}
		return next(ctx, cmd)
	}
}

func (scriptNameHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			for _, cmd := range cmds {
				if name := scriptOf(cmd); name != "" {
					span.SetAttributes(attribute.String(AttrScript, name))
					break
				}
			}
		}
		return next(ctx, cmds)
	}
}

// scriptOf names the script an EVALSHA or EVAL command runs, or returns "".
func scriptOf(cmd redis.Cmder) string {
	switch cmd.Name() {
	case "evalsha", "eval", "evalsha_ro", "eval_ro":
	default:
		return ""
	}
	args := cmd.Args()
	if len(args) < 2 {
		return ""
	}
	s, _ := args[1].(string)
	return scriptNames[s]
}
