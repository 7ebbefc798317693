package telemetry

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// LogWriter batches log lines into few writes. One write(2) per log line was
// the largest single cost of a call after the Redis round trip itself
// (BENCHMARKS.md, "CPU per call"): lines are kept in a buffer and written
// when it fills, every interval, and on Close. The price is that a process
// killed without Close loses at most the last interval of lines; payments
// never depend on them, Redis is the record.
type LogWriter struct {
	mu     sync.Mutex
	buf    *bufio.Writer
	out    io.Writer
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// logBufferSize holds a few hundred lines: at the rates one replica serves,
// the interval, not the size, decides when lines go out.
const logBufferSize = 64 << 10

// NewLogWriter returns w with lines flushed at least every interval. An
// interval of 0 or less writes every line through at once.
func NewLogWriter(w io.Writer, interval time.Duration) *LogWriter {
	lw := &LogWriter{out: w, done: make(chan struct{})}
	if interval <= 0 {
		lw.closed = true
		return lw
	}
	lw.buf = bufio.NewWriterSize(w, logBufferSize)
	lw.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				// A failed flush has dropped its batch (see Write); there
				// is nowhere left to report it.
				_ = lw.Flush()
			case <-lw.done:
				return
			}
		}
	})
	return lw
}

// Write buffers p, which slog hands over as one whole line.
func (lw *LogWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return lw.out.Write(p)
	}
	n, err := lw.buf.Write(p)
	if err != nil {
		// bufio keeps a write error forever; drop the batch instead, so
		// that a stdout that failed once does not silence the log for good.
		lw.buf.Reset(lw.out)
	}
	return n, err
}

// Flush writes out what is buffered.
func (lw *LogWriter) Flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed || lw.buf.Buffered() == 0 {
		return nil
	}
	err := lw.buf.Flush()
	if err != nil {
		lw.buf.Reset(lw.out)
	}
	return err
}

// Close flushes the buffer and stops the flushing goroutine; later lines are
// written through.
func (lw *LogWriter) Close() error {
	lw.mu.Lock()
	if lw.closed {
		lw.mu.Unlock()
		return nil
	}
	err := lw.buf.Flush()
	lw.closed = true
	lw.mu.Unlock()
	close(lw.done)
	lw.wg.Wait()
	return err
}
