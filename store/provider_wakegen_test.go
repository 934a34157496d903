package store

import (
	"slices"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// Every provider write counts up its own team's wake generation in its
// transaction and names the team in ProviderChangedTeams; other teams'
// generations stay put, and a token refresh (no change of usability)
// moves nothing.
func TestProviderWritesCountTheirTeamsWakeGen(t *testing.T) {
	s := openTemp(t)
	teamA, teamB := NewID(PrefixTeam), NewID(PrefixTeam)
	now := time.Now().UTC()
	bProv := &Provider{ID: NewID(PrefixProvider), TeamID: teamB, Type: "smtp", Status: state.ProviderActive, CreatedAt: now}
	if err := s.CreateProvider(bProv); err != nil {
		t.Fatal(err)
	}
	s.ProviderChangedTeams() // forget the setup
	genB, _ := s.WakeGen(teamB)

	group := &DeliveryGroup{ID: NewID(PrefixGroup), TeamID: teamA, Name: "g", CreatedAt: now}
	if err := s.CreateGroup(group); err != nil {
		t.Fatal(err)
	}
	p := &Provider{ID: NewID(PrefixProvider), TeamID: teamA, Type: "smtp", Status: state.ProviderInactive, CreatedAt: now, GroupID: group.ID}
	steps := []struct {
		name  string
		write func() error
	}{
		{"create", func() error { return s.CreateProvider(p) }},
		{"activate (relay form, any team)", func() error {
			_, err := s.UpdateProvider("", p.ID, 0, func(p *Provider) error { p.Status = state.ProviderActive; return nil })
			return err
		}},
		{"edit", func() error {
			_, err := s.UpdateProvider(teamA, p.ID, 0, func(p *Provider) error { p.Name = "x"; return nil })
			return err
		}},
		{"ungroup by DeleteGroup", func() error { _, err := s.DeleteGroup(teamA, group.ID, 0, now); return err }},
		{"delete", func() error { return s.DeleteProvider(teamA, p.ID, 0) }},
	}
	for _, st := range steps {
		before, _ := s.WakeGen(teamA)
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if g, _ := s.WakeGen(teamA); g != before+1 {
			t.Errorf("%s: team's wake generation %d → %d, want one up", st.name, before, g)
		}
		if teams := s.ProviderChangedTeams(); !slices.Equal(teams, []string{teamA}) {
			t.Errorf("%s: changed teams %v, want only %s", st.name, teams, teamA)
		}
	}
	if g, _ := s.WakeGen(teamB); g != genB {
		t.Errorf("another team's wake generation moved: %d → %d", genB, g)
	}

	before, _ := s.WakeGen(teamB)
	if err := s.SetProviderToken(bProv.ID, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.WakeGen(teamB); g != before {
		t.Errorf("a token refresh moved the wake generation: %d → %d", before, g)
	}
	if teams := s.ProviderChangedTeams(); len(teams) != 0 {
		t.Errorf("a token refresh named teams %v", teams)
	}
	// A refused write (wrong version) changes nothing.
	if _, err := s.UpdateProvider(teamB, bProv.ID, 999, func(*Provider) error { return nil }); err == nil {
		t.Fatal("a stale If-Match was accepted")
	}
	if g, _ := s.WakeGen(teamB); g != before {
		t.Errorf("a refused write moved the wake generation: %d → %d", before, g)
	}
	if teams := s.ProviderChangedTeams(); len(teams) != 0 {
		t.Errorf("a refused write named teams %v", teams)
	}
}

// WakeTeamUpTo moves at most limit of the team's waiting entries, oldest
// ids first, counting entries already due; the rest keep their due times.
func TestWakeTeamUpToBounded(t *testing.T) {
	for _, chunk := range []int{wakeChunk, 2} {
		t.Run("chunk", func(t *testing.T) {
			saved := wakeChunk
			wakeChunk = chunk
			defer func() { wakeChunk = saved }()
			testWakeTeamUpToBounded(t)
		})
	}
}

func testWakeTeamUpToBounded(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	ids := enqueueN(t, s, 5, now) // team_x
	later := now.Add(time.Hour)
	for _, id := range ids {
		park(t, s, id, later)
	}
	wake := now.Add(time.Second)
	moved, err := s.WakeTeamUpTo("team_x", wake, 2)
	if err != nil || moved != 2 {
		t.Fatalf("moved %d (%v), want 2", moved, err)
	}
	sorted := slices.Sorted(slices.Values(ids))
	due := dueTimes(t, s)
	for i, id := range sorted {
		want := later
		if i < 2 {
			want = wake
		}
		if !due[id].Equal(want) {
			t.Errorf("message %d due %v, want %v", i, due[id], want)
		}
	}
	// The two already due count: a limit of 3 moves one more.
	if moved, err := s.WakeTeamUpTo("team_x", wake, 3); err != nil || moved != 1 {
		t.Fatalf("second wake moved %d (%v), want 1", moved, err)
	}
	if moved, err := s.WakeTeam("team_x", wake); err != nil || moved != 2 {
		t.Fatalf("full wake moved %d (%v), want the last 2", moved, err)
	}
}
