package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkProviderWalkMain measures a provider-filtered log page over a
// main file that holds 100,000 of the team's messages spread over 200
// providers (a large queue, or history an upgrade has not moved yet): the
// main file's part of a provider walk reads the team's index keys there
// (msg_providers.go). "none" names a provider with no message: the walk
// reads every key.
func BenchmarkProviderWalkMain(b *testing.B) {
	s, _ := openTest(&testing.T{})
	defer s.Close()
	s.db.NoSync = true
	base := time.Now().UTC().Add(-24 * time.Hour)
	const n = 100000
	ms := make([]*Message, 0, n)
	for i := range n {
		at := base.Add(time.Duration(i) * 500 * time.Millisecond)
		p := fmt.Sprintf("prov_%03d", i*7919%200)
		ms = append(ms, &Message{ID: NewIDAt(PrefixMessage, at), TeamID: "team_x", From: "a@example.com", Status: state.MessagePending,
			Recipients: []Recipient{{Address: "b@example.net", Status: state.MessagePending}},
			Attempts:   []Attempt{{N: 1, ProviderID: p, StartedAt: at, Status: state.AttemptDeferred}}, CreatedAt: at, UpdatedAt: at})
	}
	if err := s.LoadHistory(ms); err != nil {
		b.Fatal(err)
	}
	inMain := 0
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bMsgByTeam).ForEach(func(_, v []byte) error {
			if listsProviders(v) {
				inMain++
			}
			return nil
		})
	})
	if inMain != n {
		b.Fatalf("%d of %d messages listed in the main file", inMain, n)
	}
	for _, p := range []string{"prov_007", "none"} {
		b.Run(p, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				got := 0
				if err := s.MessagesDescByProvider("team_x", p, "", time.Time{}, time.Time{}, func(*Message) bool { got++; return got < 50 }); err != nil {
					b.Fatal(err)
				}
				if (p == "none") != (got == 0) {
					b.Fatalf("%s: %d messages", p, got)
				}
			}
		})
	}
}
