package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// The daemon's log lines of single messages (accepted, attempt, sent,
// deferred, …: Info records that carry a msg_id) are collected in memory
// and written together, instead of one write system call per line: at
// 2 KiB per message those calls were a measurable share of the relay's CPU
// per message (issue 19). Everything else — warnings, errors, start and
// stop, configuration and listener lines — is written at once, after what
// is held, so the order of lines is kept and a crash right after a
// warning still leaves the warning in the log. What a crash (kill -9, a
// panic) can lose is the last logFlushDelay of message lines: the store is
// the record of every message, not the log.
const (
	// logFlushDelay bounds how long a message line waits in memory.
	logFlushDelay = 100 * time.Millisecond
	// logBufSize is how much is held before it is written regardless.
	logBufSize = 32 << 10
)

// logOutput is the daemon's log destination: out (stderr), written whole
// lines at a time. Its own Write writes at once; held().Write collects.
type logOutput struct {
	mu     sync.Mutex
	out    io.Writer
	buf    []byte
	timer  *time.Timer
	armed  bool // the timer will flush what is held
	closed bool // after Close everything is written at once
}

func newLogOutput(out io.Writer) *logOutput {
	o := &logOutput{out: out, buf: make([]byte, 0, logBufSize)}
	o.timer = time.AfterFunc(time.Hour, o.timed)
	o.timer.Stop()
	return o
}

// Write writes p at once, after anything held (lines keep their order).
func (o *logOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	return o.out.Write(p)
}

// heldWriter is the writer of the lines that may wait.
type heldWriter struct{ o *logOutput }

// Write keeps p (one whole log line: slog's handlers write a record in
// one call) to be written with the next lines. A line never straddles
// two writes of out: the buffer is written first when p does not fit.
func (h heldWriter) Write(p []byte) (int, error) {
	o := h.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || len(p) >= logBufSize {
		o.flushLocked()
		return o.out.Write(p)
	}
	if len(o.buf)+len(p) > logBufSize {
		o.flushLocked()
	}
	o.buf = append(o.buf, p...)
	if !o.armed {
		o.armed = true
		o.timer.Reset(logFlushDelay)
	}
	return len(p), nil
}

// flushLocked writes what is held. A failed write loses those lines, as
// it would have lost each of them written alone; the buffer is emptied
// either way so that one bad moment does not hold every later line.
func (o *logOutput) flushLocked() {
	if len(o.buf) == 0 {
		return
	}
	o.out.Write(o.buf)
	o.buf = o.buf[:0]
}

func (o *logOutput) timed() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.armed = false
	o.flushLocked()
}

// Flush writes what is held now (before os.Exit, which runs no defers).
func (o *logOutput) Flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
}

// Close writes what is held; later lines are written at once.
func (o *logOutput) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.timer.Stop()
	o.armed = false
	o.flushLocked()
}

// newDaemonLogger is the daemon's JSON logger on o: message lines below
// Warn are held (heldWriter), the rest written at once.
func newDaemonLogger(o *logOutput, opts *slog.HandlerOptions) *slog.Logger {
	return slog.New(splitHandler{
		held:   slog.NewJSONHandler(heldWriter{o}, opts),
		direct: slog.NewJSONHandler(o, opts),
	})
}

// splitHandler sends each record to one of two handlers of the same
// format and options: held for the lines of single messages, direct for
// the rest.
type splitHandler struct{ held, direct slog.Handler }

// Enabled is the handlers' (shared) level.
func (h splitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.direct.Enabled(ctx, l)
}

// Handle picks the handler: a record below Warn with a msg_id attribute
// of its own (not one from Logger.With, which is then written at once:
// the safe side) may wait.
func (h splitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn && hasMsgID(r) {
		return h.held.Handle(ctx, r)
	}
	return h.direct.Handle(ctx, r)
}

func hasMsgID(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == "msg_id"
		return !found
	})
	return found
}

// WithAttrs applies to both handlers.
func (h splitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return splitHandler{held: h.held.WithAttrs(as), direct: h.direct.WithAttrs(as)}
}

// WithGroup applies to both handlers.
func (h splitHandler) WithGroup(name string) slog.Handler {
	return splitHandler{held: h.held.WithGroup(name), direct: h.direct.WithGroup(name)}
}
