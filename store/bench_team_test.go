package store

import (
	"fmt"
	"github.com/smtpmux/smtpmux/internal/state"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// benchTeamStore opens a store in b's temp dir holding teams teams of
// perTeam providers each, created concurrently (grouped commits keep the
// setup short), and returns it with the first team's ID ("" for none).
func benchTeamStore(b *testing.B, teams, perTeam int) (*Store, string) {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ids := make([]string, teams)
	for i := range ids {
		ids[i] = NewID(PrefixTeam)
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for team := range work {
				if err := s.PutTeam(&Team{ID: team, Name: team, CreatedAt: time.Now()}); err != nil {
					b.Error(err)
					return
				}
				for j := 0; j < perTeam; j++ {
					if err := s.CreateProvider(benchProvider(team, j)); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if teams == 0 {
		return s, ""
	}
	return s, ids[0]
}

func benchProvider(team string, j int) *Provider {
	now := time.Now()
	return &Provider{ID: NewID(PrefixProvider), TeamID: team, Name: fmt.Sprintf("SMTP %d", j), Type: TypeSMTP,
		Status: state.ProviderActive, SMTPHost: "smtp.example.com", SMTPPort: 587, SMTPProtocol: "starttls",
		SMTPUsername: "user@example.com", SMTPPasswordSealed: make([]byte, 48), FromEmail: "a@example.com",
		CreatedAt: now, UpdatedAt: now, ActivatedAt: now}
}

// BenchmarkTeamProviders lists one team's 5 providers in a store shared
// with 1, 100 and 1,000 teams (issue 18): the time per list should not
// grow with the other teams.
func BenchmarkTeamProviders(b *testing.B) {
	for _, teams := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("teams=%d", teams), func(b *testing.B) {
			s, team := benchTeamStore(b, teams, 5)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ps, err := s.Providers(team)
				if err != nil || len(ps) != 5 {
					b.Fatalf("%d providers, %v", len(ps), err)
				}
			}
		})
	}
}

// BenchmarkCreateTeamsProviders creates 5 providers for each of 1,000
// teams, one after the other, each create preceded by the account-limit
// count of its team (what POST /providers does). One op is the whole
// 5,000 creates; the figure to read is s/op.
func BenchmarkCreateTeamsProviders(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, _ := benchTeamStore(b, 0, 0)
		teams := make([]string, 1000)
		for j := range teams {
			teams[j] = NewID(PrefixTeam)
		}
		b.StartTimer()
		for _, team := range teams {
			for j := 0; j < 5; j++ {
				ps, err := s.Providers(team)
				if err != nil || len(ps) != j {
					b.Fatalf("%d providers, %v", len(ps), err)
				}
				if err := s.CreateProvider(benchProvider(team, j)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
