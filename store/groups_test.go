package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

func newGroup(t *testing.T, s *Store, teamID, name string) *DeliveryGroup {
	t.Helper()
	now := time.Now().UTC()
	g := &DeliveryGroup{ID: NewID(PrefixGroup), TeamID: teamID, Name: name, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateGroup(g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGroupCRUD(t *testing.T) {
	s, _ := openTest(t)
	g := newGroup(t, s, "t1", "transactional")
	newGroup(t, s, "t2", "other team")
	if g.Version != 1 {
		t.Fatalf("version %d", g.Version)
	}
	if err := s.CreateGroup(g); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate id: %v", err)
	}
	got, err := s.Group("t1", g.ID)
	if err != nil || got.Name != "transactional" {
		t.Fatalf("Group = %+v, %v", got, err)
	}
	if _, err := s.Group("t2", g.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team's group: %v", err)
	}
	if gs, err := s.Groups("t1"); err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("Groups = %v, %v", gs, err)
	}
	if _, err := s.UpdateGroup("t1", g.ID, 5, func(*DeliveryGroup) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale version: %v", err)
	}
	if _, err := s.UpdateGroup("t2", g.ID, 0, func(*DeliveryGroup) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team update: %v", err)
	}
	up, err := s.UpdateGroup("t1", g.ID, 1, func(g *DeliveryGroup) error {
		g.Name, g.TeamID = "renamed", "t2" // the team cannot be changed
		return nil
	})
	if err != nil || up.Version != 2 || up.Name != "renamed" || up.TeamID != "t1" {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if _, err := s.DeleteGroup("t2", g.ID, 0, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team delete: %v", err)
	}
	if _, err := s.DeleteGroup("t1", g.ID, 1, time.Now()); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if _, err := s.DeleteGroup("t1", g.ID, 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Group("t1", g.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted group: %v", err)
	}
	if _, err := s.DeleteGroup("t1", g.ID, 0, time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestDeleteGroupSemantics: members move to no group with a new version,
// other groups' and teams' providers are untouched, and the keys and
// mailboxes whose scope named the group are reported (revoked keys not).
func TestDeleteGroupSemantics(t *testing.T) {
	s, _ := openTest(t)
	g := newGroup(t, s, "t1", "bulk")
	keep := newGroup(t, s, "t1", "transactional")
	mk := func(team, group string) *Provider {
		p := &Provider{ID: NewID(PrefixProvider), TeamID: team, Type: TypeSMTP, Status: state.ProviderActive, GroupID: group}
		if err := s.CreateProvider(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m1, m2 := mk("t1", g.ID), mk("t1", g.ID)
	other := mk("t1", keep.ID)
	none := mk("t1", "")
	// A foreign provider naming the ID (cannot happen through the API)
	// must not be touched by another team's delete.
	foreign := mk("t2", g.ID)

	key := func(team string, sc Scope, revoked bool) *APIKey {
		k := &APIKey{ID: NewID(PrefixKey), TeamID: team, Type: KeySending, Hash: HashSecret(NewSecret(SecretPrefixSending)), SendScope: sc}
		if revoked {
			now := time.Now()
			k.RevokedAt = &now
		}
		if err := s.CreateKey(k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	named := Scope{Type: "group", GroupPublicIDs: []string{keep.ID, g.ID}}
	kNamed := key("t1", named, false)
	key("t1", named, true)
	key("t1", Scope{Type: "group", GroupPublicIDs: []string{keep.ID}}, false)
	key("t1", Scope{Type: "all"}, false)
	key("t2", named, false)
	mbNamed := &Mailbox{ID: NewID(PrefixMailbox), TeamID: "t1", Address: "a@example.com", SendScope: named}
	mbAll := &Mailbox{ID: NewID(PrefixMailbox), TeamID: "t1", Address: "b@example.com", SendScope: Scope{Type: "all"}}
	for _, m := range []*Mailbox{mbNamed, mbAll} {
		if err := s.CreateMailbox(m); err != nil {
			t.Fatal(err)
		}
	}

	gen := s.ProvidersGen()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	res, err := s.DeleteGroup("t1", g.ID, 0, at)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.MovedProviders)
	want := []string{m1.ID, m2.ID}
	slices.Sort(want)
	if !slices.Equal(res.MovedProviders, want) || !slices.Equal(res.AffectedKeys, []string{kNamed.ID}) ||
		!slices.Equal(res.AffectedMailboxes, []string{mbNamed.ID}) {
		t.Fatalf("result = %+v", res)
	}
	if s.ProvidersGen() == gen {
		t.Fatal("providers generation did not move")
	}
	for _, p := range []*Provider{m1, m2} {
		got, _ := s.Provider(p.ID)
		if got.GroupID != "" || got.Version != 2 || !got.UpdatedAt.Equal(at) {
			t.Fatalf("member after delete: %+v", got)
		}
	}
	for _, p := range []*Provider{other, none, foreign} {
		got, _ := s.Provider(p.ID)
		if got.GroupID != p.GroupID || got.Version != 1 {
			t.Fatalf("non-member changed: %+v", got)
		}
	}
	// Scopes are reported, not rewritten.
	if k, _ := s.Key(kNamed.ID); !slices.Equal(k.SendScope.GroupPublicIDs, named.GroupPublicIDs) {
		t.Fatalf("key scope rewritten: %+v", k.SendScope)
	}

	// A group nobody uses: empty result, generation unchanged.
	empty := newGroup(t, s, "t1", "empty")
	gen = s.ProvidersGen()
	res, err = s.DeleteGroup("t1", empty.ID, 0, at)
	if err != nil || len(res.MovedProviders)+len(res.AffectedKeys)+len(res.AffectedMailboxes) != 0 {
		t.Fatalf("empty group delete = %+v, %v", res, err)
	}
	if s.ProvidersGen() != gen {
		t.Fatal("generation moved although no provider changed")
	}
}
