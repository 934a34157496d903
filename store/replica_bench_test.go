package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkDryRun measures what a cluster-mode write costs before it goes
// to etcd: fn on the view plus the walk over the state-of-record buckets
// that finds the keys it changed, with 10,000 providers in 1,000 teams.
func BenchmarkDryRun(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "d.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	for i := range 10000 {
		p := &Provider{ID: NewID(PrefixProvider), TeamID: fmt.Sprintf("team_%04d", i%1000), Name: "p", Type: TypeSMTP, CreatedAt: now}
		if err := s.CreateProvider(p); err != nil {
			b.Fatal(err)
		}
	}
	ps, _ := s.Providers("team_0007")
	id := ps[0].ID
	b.ResetTimer()
	for range b.N {
		changes, err := s.dryRun(func(tx *bolt.Tx) error {
			_, err := updateTeamRecord(tx, kindProviders, "team_0007", id, 0, func(p *Provider) error { p.Name = "q"; return nil })
			return err
		})
		if err != nil || len(changes) != 1 {
			b.Fatalf("%v %v", changes, err)
		}
	}
}
