package store

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// BenchmarkHistoryKeys measures what every write of a message record
// costs in history keys: the old and the new record's counter and filter
// keys, and moving the counters and index entries by the difference, for
// a claim (an attempt starts) and a result (sent), in one transaction
// that is rolled back (issue 19).
func BenchmarkHistoryKeys(b *testing.B) {
	s, _ := openTest(&testing.T{})
	defer s.Close()
	now := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	queued := newMsg(now)
	queued.Recipients = append(queued.Recipients, Recipient{Address: "c@example.com", Status: state.MessagePending})
	claimed := *queued
	claimed.Attempts = []Attempt{{N: 1, ProviderID: "prov_1", StartedAt: now, Status: state.AttemptInProgress}}
	sent := claimed
	sent.Status = state.MessageSent
	sent.Recipients = []Recipient{
		{Address: "b@example.com", Status: state.MessageSent, ProviderID: "prov_1", UpdatedAt: &now},
		{Address: "c@example.com", Status: state.MessageSent, ProviderID: "prov_1", UpdatedAt: &now},
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	if err := indexNewMessage(tx, queued); err != nil {
		b.Fatal(err)
	}
	steps := []*Message{queued, &claimed, &sent}
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 1; j <= len(steps); j++ {
			old, m := steps[j-1], steps[j%len(steps)] // sent → queued again keeps the buckets' size
			oldCounts, oldKeys, newCounts := countKeys(old), indexKeys(old), countKeys(m)
			if err := moveCountKeys(tx, oldCounts, newCounts); err != nil {
				b.Fatal(err)
			}
			if err := moveIndexKeys(tx, m.TeamID, m.ID, oldKeys, m); err != nil {
				b.Fatal(err)
			}
			oldCounts.release()
			oldKeys.release()
			newCounts.release()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(b.N), "cpu-µs/op")
}
