package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkMoveHistory measures the history mover's own cost per moved
// message (issue 18): 20,000 finished messages of 100 teams, each as the
// relay leaves one (an attempt with its routing explanation, a sent
// recipient), moved from the main file to their day file in steps of
// historyMoveBatch. It reports CPU, main-file page writes and commits per
// moved message. Its main-file deletes go in chunks of historyDeleteChunk
// (an idle committer's) or of moverSubChunk, about what one commit takes
// while acceptance writes flow (moverYield): in commits of its own, each
// moved message then writes about four times as many main-file pages,
// most of them each commit's fixed root-to-leaf paths (bench/RESULTS.md,
// session 15; in commits shared with acceptance the mover adds fewer, and
// BenchmarkAcceptanceWithMover's pages/s shows those).
func BenchmarkMoveHistory(b *testing.B) {
	for _, chunk := range []int{historyDeleteChunk, moverSubChunk} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			defer func(c int) { historyDeleteChunk = c }(historyDeleteChunk)
			historyDeleteChunk = chunk
			benchmarkMoveHistory(b)
		})
	}
}

func benchmarkMoveHistory(b *testing.B) {
	routingJSON, _ := json.Marshal(map[string]any{"scope": "team", "picked": "prov_1", "weights": map[string]int{"prov_1": 100}})
	for range b.N {
		b.StopTimer()
		s, err := Open(filepath.Join(b.TempDir(), "m.db"), time.Second, WithoutHistoryMover())
		if err != nil {
			b.Fatal(err)
		}
		at := time.Now().Add(-5 * time.Minute).UTC()
		ms := make([]*Message, 0, 20_000)
		for i := range 20_000 {
			t := at.Add(time.Duration(i) * time.Millisecond)
			ms = append(ms, &Message{ID: NewIDAt(PrefixMessage, t), TeamID: fmt.Sprint("team_", i%100), CredentialID: "key_1",
				From: "app@example.com", Subject: "history", Size: 2048, Status: state.MessageSent,
				Recipients: []Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: state.MessageSent, Code: 250, ProviderID: fmt.Sprint("prov_", i%7), UpdatedAt: &t}},
				Attempts: []Attempt{{N: 1, ProviderID: fmt.Sprint("prov_", i%7), ProviderType: "smtp", StartedAt: t, Status: state.AttemptSent,
					Code: 250, Reply: "250 2.0.0 Ok: queued as 4Xyz", DurationMS: 3, DataStarted: true, Routing: routingJSON}},
				CreatedAt: t, UpdatedAt: t})
		}
		if err := s.LoadHistory(ms); err != nil {
			b.Fatal(err)
		}
		cpu0, w0, f0 := cpuTime(), pageWrites(s), minorFaults()
		c0, _, _ := s.CommitStats()
		t0trims := s.mapTrims.Load()
		if f := os.Getenv("MOVE_PROFILE"); f != "" {
			pf, _ := os.Create(f)
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
		b.StartTimer()
		t0 := time.Now()
		moved := 0
		for {
			n, more, err := s.MoveHistory(time.Now(), historyMoveBatch)
			if err != nil {
				b.Fatal(err)
			}
			moved += n
			if !more {
				break
			}
		}
		b.StopTimer()
		if moved != len(ms) {
			b.Fatalf("moved %d of %d", moved, len(ms))
		}
		c1, _, _ := s.CommitStats()
		b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(moved), "cpu-µs/moved")
		b.ReportMetric(float64(pageWrites(s)-w0)/float64(moved), "mainpages/moved")
		b.ReportMetric(float64(c1-c0)/float64(moved)*1000, "commits/1000moved")
		b.ReportMetric(float64(moved)/time.Since(t0).Seconds(), "moved/s")
		b.ReportMetric(float64(s.mapTrims.Load()-t0trims), "trims")
		b.ReportMetric(float64(minorFaults()-f0)/float64(moved), "faults/moved")
		dir := filepath.Join(filepath.Dir(s.db.Path()), "history")
		s.Close()
		b.ReportMetric(float64(dayFilesUsed(b, dir))/float64(moved), "dayB/moved")
	}
}

// dayFilesUsed is the used part (high-water mark) of the day files in dir.
func dayFilesUsed(b *testing.B, dir string) (n int64) {
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(names) == 0 {
		b.Fatalf("no day files in %s (%v)", dir, err)
	}
	for _, name := range names {
		db, err := bolt.Open(name, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		db.View(func(tx *bolt.Tx) error { n += tx.Size(); return nil })
		db.Close()
	}
	return n
}

// minorFaults is the process's minor page faults so far.
func minorFaults() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}
