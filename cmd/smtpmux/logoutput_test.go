package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingOut is a log destination that keeps every Write separately.
type recordingOut struct {
	mu     sync.Mutex
	writes [][]byte
}

func (r *recordingOut) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recordingOut) snapshot() (writes int, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes), string(bytes.Join(r.writes, nil))
}

// lines parses the output as JSON lines, failing on a broken one, and
// checks that no write ends inside a line.
func (r *recordingOut) lines(t *testing.T) []map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for i, w := range r.writes {
		if len(w) == 0 || w[len(w)-1] != '\n' {
			t.Fatalf("write %d does not end a line: %q", i, w)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(w), "\n"), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("write %d holds a broken line %q: %v", i, l, err)
			}
			out = append(out, m)
		}
	}
	return out
}

// TestLogMessageLinesBatched: message lines share write calls instead of
// one system call each (issue 19), every line arrives whole and in order,
// a warning goes out at once together with what was held before it, and
// Close (the daemon's exit) writes the rest.
func TestLogMessageLinesBatched(t *testing.T) {
	rec := &recordingOut{}
	o := newLogOutput(rec)
	log := newDaemonLogger(o, &slog.HandlerOptions{Level: slog.LevelInfo})
	const n = 200
	for i := range n {
		log.Info("sent", "event", "sent", "msg_id", fmt.Sprintf("eml_%d", i), "code", 250)
	}
	if w, _ := rec.snapshot(); w >= n/10 {
		t.Fatalf("%d message lines took %d writes", n, w)
	}
	log.Warn("provider pulled from rotation", "event", "provider_pulled", "provider", "prv_1")
	w, text := rec.snapshot()
	if !strings.Contains(text, `"msg_id":"eml_199"`) || !strings.HasSuffix(text, "\"provider\":\"prv_1\"}\n") {
		t.Fatalf("after a warning, %d writes; held lines not written before it:\n%.300s", w, text)
	}
	log.Info("accepted", "event", "accepted", "msg_id", "eml_last")
	o.Close()
	lines := rec.lines(t)
	if len(lines) != n+2 {
		t.Fatalf("%d lines written, want %d", len(lines), n+2)
	}
	for i := range n {
		if got := lines[i]["msg_id"]; got != fmt.Sprintf("eml_%d", i) {
			t.Fatalf("line %d is %v: order lost", i, got)
		}
	}
	if lines[n+1]["msg_id"] != "eml_last" {
		t.Fatalf("the line held at Close was not written: %v", lines[n+1])
	}
	// After Close (shutdown), lines go out at once.
	log.Info("sent", "event", "sent", "msg_id", "eml_after")
	if _, text := rec.snapshot(); !strings.Contains(text, "eml_after") {
		t.Fatal("a line after Close was held")
	}
}

// TestLogHeldLinesFlushedByTimer: a held line reaches the output without
// any later line or Close, within logFlushDelay (polled, not slept).
func TestLogHeldLinesFlushedByTimer(t *testing.T) {
	rec := &recordingOut{}
	o := newLogOutput(rec)
	defer o.Close()
	log := newDaemonLogger(o, nil)
	log.Info("accepted", "event", "accepted", "msg_id", "eml_1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, text := rec.snapshot(); strings.Contains(text, "eml_1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a held line was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Lines without a msg_id (start, configuration) are not held.
	log.Info("smtpmux started", "version", "test")
	if _, text := rec.snapshot(); !strings.Contains(text, "smtpmux started") {
		t.Fatal("a lifecycle line was held")
	}
}

// TestLogConcurrentLinesWhole: many goroutines logging at once, with lines
// large enough to fill the buffer often: every line arrives whole, none
// split across writes or mixed with another.
func TestLogConcurrentLinesWhole(t *testing.T) {
	rec := &recordingOut{}
	o := newLogOutput(rec)
	log := newDaemonLogger(o, nil)
	big := strings.Repeat("x", logBufSize/3)
	var wg sync.WaitGroup
	const workers, each = 8, 200
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				reply := "ok"
				if i%17 == 0 {
					reply = big
				}
				if i%50 == 0 {
					log.Warn("warning", "worker", g, "i", i)
					continue
				}
				log.Info("sent", "msg_id", fmt.Sprintf("eml_%d_%d", g, i), "reply", reply)
			}
		}()
	}
	huge := strings.Repeat("y", 2*logBufSize)
	log.Info("sent", "msg_id", "eml_huge", "reply", huge)
	wg.Wait()
	o.Close()
	lines := rec.lines(t)
	if len(lines) != workers*each+1 {
		t.Fatalf("%d lines, want %d", len(lines), workers*each+1)
	}
}

// BenchmarkLogLine is one message line (as logFinal writes it) to a file:
// one write system call per line (unbuffered, as before issue 19) against
// the daemon's logger, which batches them.
func BenchmarkLogLine(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	o := newLogOutput(f)
	defer o.Close()
	for _, c := range []struct {
		name string
		log  *slog.Logger
	}{
		{"unbuffered", slog.New(slog.NewJSONHandler(f, nil))},
		{"daemon", newDaemonLogger(o, nil)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.log.Info("sent", "event", "sent", "msg_id", "eml_0123456789abcdef", "team", "team_0123456789",
					"provider", "prv_0123456789", "code", 250)
			}
		})
	}
}
