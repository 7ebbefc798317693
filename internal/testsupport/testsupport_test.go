package testsupport

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %s, want %s", got, start)
	}
	c.Advance(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Errorf("after Advance(90s): Now() = %s, want %s", got, want)
	}
}

func TestTracerExportsEndedSpans(t *testing.T) {
	tp, exp := NewTracer(t)
	_, span := tp.Tracer("test").Start(context.Background(), "op")
	span.SetAttributes(attribute.String("k", "v"), attribute.Int("n", 3))
	if got := len(exp.GetSpans()); got != 0 {
		t.Fatalf("before End: got %d spans, want 0", got)
	}
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("after End: got %d spans, want 1", len(spans))
	}
	if diff := cmp.Diff(map[string]string{"k": "v", "n": "3"}, SpanAttrs(spans[0])); diff != "" {
		t.Errorf("SpanAttrs mismatch (-want +got):\n%s", diff)
	}
}
