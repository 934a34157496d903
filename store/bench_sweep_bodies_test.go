package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// BenchmarkSweepBodiesPass is one pass of the body retention sweep over a
// steady store's window (issue 18): 20,000 messages finished within the
// body retention, their records moved to their day files, their 2 KiB
// bodies in the main file, none due. It reports the pass's time per body
// in the window: what each pass costs for bodies it may not delete yet.
func BenchmarkSweepBodiesPass(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "s.db"), time.Second, WithoutHistoryMover())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	at := now.Add(-time.Hour) // an hour ago: inside a 72 h body retention
	const n = 20_000
	ms, ids := make([]*Message, 0, n), make([]string, 0, n)
	for i := range n {
		t := at.Add(time.Duration(i) * time.Millisecond)
		ms = append(ms, &Message{ID: NewIDAt(PrefixMessage, t), TeamID: fmt.Sprint("team_", i%100), From: "app@example.com",
			Status: state.MessageSent, Recipients: []Recipient{{Address: "b@example.net", Status: state.MessageSent}},
			CreatedAt: t, UpdatedAt: t})
		ids = append(ids, ms[i].ID)
	}
	if err := s.LoadHistory(ms); err != nil {
		b.Fatal(err)
	}
	if err := s.LoadBodies(ids, bytes.Repeat([]byte("x"), 2048)); err != nil {
		b.Fatal(err)
	}
	for {
		if _, more, err := s.MoveHistory(now, 1024); err != nil || !more {
			if err != nil {
				b.Fatal(err)
			}
			break
		}
	}
	cutoff := now.Add(-72 * time.Hour)
	b.ResetTimer()
	for range b.N {
		for after := ""; ; {
			k, next, err := s.SweepBodies(cutoff, after, 64)
			if err != nil || k != 0 {
				b.Fatalf("swept %d, %v; want nothing due", k, err)
			}
			if after = next; next == "" {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/body-in-window")
}
