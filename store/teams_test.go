package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smtpmux/smtpmux/internal/state"
)

func teamFixture(name string) (*Team, *Provider, *APIKey) {
	now := time.Now().UTC()
	t := &Team{ID: NewID(PrefixTeam), Name: name, CreatedAt: now}
	p := &Provider{ID: NewID(PrefixProvider), TeamID: t.ID, Type: TypeManagedSES, Managed: true,
		Status: state.ProviderActive, CreatedAt: now}
	secret := NewSecret(SecretPrefixRoot)
	k := &APIKey{ID: NewID(PrefixKey), TeamID: t.ID, Type: KeyRoot, Hash: HashSecret(secret), CreatedAt: now}
	return t, p, k
}

// TestCreateTeamOneNameOnce: concurrent creates of one name (they share
// grouped commits) leave exactly one team, with its managed account and
// key; the others are ErrConflict and leave nothing behind.
func TestCreateTeamOneNameOnce(t *testing.T) {
	s, _ := openTest(t)
	const n = 16
	errs := make([]error, n)
	teams := make([]*Team, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tm, p, k := teamFixture("acme")
			teams[i], errs[i] = tm, s.CreateTeam(tm, p, k)
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("two creates of one name succeeded")
		case err == nil:
			won = i
		case !errors.Is(err, ErrConflict):
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no create succeeded")
	}
	all, err := s.Teams()
	if err != nil || len(all) != 1 || all[0].ID != teams[won].ID {
		t.Fatalf("teams %v, %v", all, err)
	}
	if got, err := s.TeamByName("acme"); err != nil || got.ID != teams[won].ID {
		t.Fatalf("by name: %v %v", got, err)
	}
	if ps, err := s.Providers(""); err != nil || len(ps) != 1 || ps[0].TeamID != teams[won].ID {
		t.Fatalf("providers %v %v", ps, err)
	}
	if ks, err := s.Keys(teams[won].ID); err != nil || len(ks) != 1 {
		t.Fatalf("keys %v %v", ks, err)
	}
}

// TestMigrateTeamNames: a version 6 file (teams without the name index)
// gets the index at step 7, and the first created team of a name keeps it.
func TestMigrateTeamNames(t *testing.T) {
	s, path := openTest(t)
	a, pa, ka := teamFixture("a")
	b, pb, kb := teamFixture("b")
	for _, c := range []struct {
		t *Team
		p *Provider
		k *APIKey
	}{{a, pa, ka}, {b, pb, kb}} {
		if err := s.CreateTeam(c.t, c.p, c.k); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	dup := &Team{ID: NewID(PrefixTeam), Name: "a", CreatedAt: a.CreatedAt.Add(time.Hour)}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := putJSON(tx.Bucket(bTeams), dup.ID, dup); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bTeamNames); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(6))
	})
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for name, want := range map[string]string{"a": a.ID, "b": b.ID} {
		if got, err := s2.TeamByName(name); err != nil || got.ID != want {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	if _, err := s2.TeamByName("c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown name: %v", err)
	}
}
