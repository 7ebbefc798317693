package telemetry

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder counts the writes that reach it.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   bool
	wrote  chan struct{}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("stdout is gone")
	}
	r.writes++
	n, err := r.buf.Write(p)
	if r.wrote != nil {
		select {
		case r.wrote <- struct{}{}:
		default:
		}
	}
	return n, err
}

func (r *recorder) state() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

func TestLogWriterBatchesLines(t *testing.T) {
	rec := &recorder{}
	// An interval no test run reaches: only Close writes.
	lw := NewLogWriter(rec, time.Hour)
	for range 100 {
		if _, err := lw.Write([]byte("{\"msg\":\"rpc\"}\n")); err != nil {
			t.Fatal(err)
		}
	}
	if got, n := rec.state(); got != "" || n != 0 {
		t.Fatalf("before Close: got %d writes (%q), want none", n, got)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	got, n := rec.state()
	if want := strings.Repeat("{\"msg\":\"rpc\"}\n", 100); got != want || n != 1 {
		t.Errorf("after Close: got %d writes of %d bytes, want 1 write of %d bytes", n, len(got), len(want))
	}
	// After Close lines go straight through.
	if _, err := lw.Write([]byte("late\n")); err != nil {
		t.Fatal(err)
	}
	if got, n := rec.state(); !strings.HasSuffix(got, "late\n") || n != 2 {
		t.Errorf("after Close: got %d writes ending %q, want 2 ending \"late\\n\"", n, got[len(got)-5:])
	}
}

func TestLogWriterFlushesOnItsOwn(t *testing.T) {
	rec := &recorder{wrote: make(chan struct{}, 1)}
	lw := NewLogWriter(rec, time.Millisecond)
	defer lw.Close()
	if _, err := lw.Write([]byte("line\n")); err != nil {
		t.Fatal(err)
	}
	<-rec.wrote // the ticker's flush, with no Close: a hang here is the failure
	if got, _ := rec.state(); got != "line\n" {
		t.Errorf("got %q, want %q", got, "line\n")
	}
}

func TestLogWriterWithoutInterval(t *testing.T) {
	rec := &recorder{}
	lw := NewLogWriter(rec, 0)
	for range 3 {
		if _, err := lw.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, n := rec.state(); n != 3 {
		t.Errorf("got %d writes, want 3: interval 0 writes every line at once", n)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLogWriterSurvivesAFailedWrite(t *testing.T) {
	rec := &recorder{fail: true}
	lw := NewLogWriter(rec, time.Hour)
	if _, err := lw.Write([]byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	if err := lw.Flush(); err == nil {
		t.Fatal("Flush to a failing writer: got nil error, want one")
	}
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	if _, err := lw.Write([]byte("kept\n")); err != nil {
		t.Fatalf("Write after a failed flush: got %v, want nil", err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.state(); got != "kept\n" {
		t.Errorf("got %q, want %q: the failed batch is dropped, later lines still go out", got, "kept\n")
	}
}
