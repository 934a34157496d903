package store

import (
	"bytes"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkDeliveredMessage measures the store's part of one delivered
// message, as the relay does it with 20 sessions: Enqueue, the
// scheduler's read, the claim (an
// in_progress attempt and quota counters), the data-phase mark and the
// result, each a grouped, fsync'd write. Besides ns/op (wall time, which a
// loaded machine inflates) it reports cpu-µs/op, the process's user+system
// CPU per message, and allocations: the figures that do not depend on
// what else the machine runs (bench/RESULTS.md, issue 19).
func BenchmarkDeliveredMessage(b *testing.B) {
	s, _ := openTest(&testing.T{})
	defer s.Close()
	body := bytes.Repeat([]byte("x"), 2<<10)
	routingJSON, _ := json.Marshal(map[string]any{"scope": "team", "picked": "prov_1", "weights": map[string]int{"prov_1": 100}})
	b.SetParallelism(10) // 10 × GOMAXPROCS writers
	b.ReportAllocs()
	cpu0 := cpuTime()
	commits0, _, _ := s.CommitStats()
	writes0 := pageWrites(s)
	used0 := usedBytes(s)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now().UTC()
			m := newMsg(now)
			m.Scope = Scope{Type: "all"}
			if err := s.Enqueue(m, body); err != nil {
				b.Error(err)
				return
			}
			// The scheduler reads the record (to pick) before it claims it.
			if _, err := s.Message(m.ID); err != nil {
				b.Error(err)
				return
			}
			_, err := s.ClaimMessage(m.ID, func(m *Message) error {
				m.Attempts = append(m.Attempts, Attempt{N: len(m.Attempts) + 1, ProviderID: "prov_1", ProviderType: "smtp",
					StartedAt: now, Status: state.AttemptInProgress, Routing: routingJSON})
				m.State, m.UpdatedAt, m.Waiting = StateInflight, now, nil
				return nil
			}, "prov_1", UsageRecord{HourStart: now.Truncate(time.Hour), Hour: 1, DayStart: now.Truncate(24 * time.Hour), Day: 1})
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.MarkDataStarted(m.ID, 1); err != nil {
				b.Error(err)
				return
			}
			_, err = s.UpdateMessage(m.ID, func(m *Message) error {
				a := &m.Attempts[len(m.Attempts)-1]
				a.Status, a.Code, a.Reply, a.DurationMS = state.AttemptSent, 250, "250 2.0.0 Ok: queued as 4Xyz", 3
				done := time.Now().UTC()
				for i := range m.Recipients {
					m.Recipients[i].Status, m.Recipients[i].Code, m.Recipients[i].ProviderID = state.MessageSent, 250, "prov_1"
					m.Recipients[i].UpdatedAt = &done
				}
				m.State, m.Status, m.UpdatedAt = StateDone, state.MessageSent, done
				return nil
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(b.N), "cpu-µs/op")
	commits1, _, _ := s.CommitStats()
	b.ReportMetric(float64(commits1-commits0)/float64(b.N), "commits/op")
	b.ReportMetric(float64(pageWrites(s)-writes0)/float64(b.N), "pagewrites/op")
	// The file's used part (its high-water mark) per message: what a
	// finished message costs the main file until the mover takes it.
	b.ReportMetric(float64(usedBytes(s)-used0)/float64(b.N), "usedB/op")
}

// usedBytes is the main file's high-water mark: the pages bbolt has ever
// used (free ones included), not the file's preallocated size.
func usedBytes(s *Store) int64 {
	var n int64
	s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// pageWrites is how many page writes the store's commits issued so far.
func pageWrites(s *Store) int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}
