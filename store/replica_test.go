package store

import (
	"errors"
	"testing"
	"time"
)

// logReplicator is a test peer standing in for the shared log: a commit
// applies the changes to every member store in order, or fails whole.
type logReplicator struct {
	members []*Store
	seq     int64
	commits int
	fail    error // returned by Begin and Commit when set
	// race, when set, runs once inside the next Commit before the token
	// check, as a write of another node landing in between.
	race func()
}

func (l *logReplicator) Begin() (int64, error) { return l.seq, l.fail }

func (l *logReplicator) Commit(token int64, changes []Change) error {
	if l.race != nil {
		race := l.race
		l.race = nil
		race()
	}
	if l.fail != nil {
		return l.fail
	}
	if token != l.seq {
		return ErrStale
	}
	l.seq++
	l.commits++
	for _, m := range l.members {
		if err := m.ApplyChanges(changes); err != nil {
			return err
		}
	}
	return nil
}

// TestReplicatedWrites: a state-of-record write on one store reaches the
// other through the changes it made (indexes included), the rules stay
// the store's own (If-Match against the shared version), and a write the
// log refuses leaves nothing behind on the writer.
func TestReplicatedWrites(t *testing.T) {
	a, b := openTemp(t), openTemp(t)
	log := &logReplicator{members: []*Store{a, b}}
	a.SetReplicator(log)
	b.SetReplicator(log)
	now := time.Now().UTC()
	p := &Provider{ID: NewID(PrefixProvider), TeamID: "team_a", Name: "p", Type: TypeSMTP, CreatedAt: now}
	if err := a.CreateProvider(p); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Providers("team_a"); err != nil || len(got) != 1 || got[0].Version != 1 {
		t.Fatalf("provider on b: %v %v", got, err)
	}
	if gen, _ := b.WakeGen("team_a"); gen == 0 {
		t.Fatal("b's wake generation did not move with a provider it applied")
	}
	k := &APIKey{ID: NewID(PrefixKey), TeamID: "team_a", Type: KeySending, Hash: HashSecret("smx_replicated_secret_00"), CreatedAt: now}
	if err := b.CreateKey(k); err != nil {
		t.Fatal(err)
	}
	if _, err := a.KeyBySecret("smx_replicated_secret_00"); err != nil {
		t.Fatalf("key made on b, by secret on a: %v", err)
	}
	if _, err := b.UpdateProvider("team_a", p.ID, 1, func(p *Provider) error { p.Name = "q"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateProvider("team_a", p.ID, 1, func(p *Provider) error { p.Name = "r"; return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale If-Match on the other store: %v", err)
	}
	if _, err := a.UpdateProvider("team_b", p.ID, 0, func(p *Provider) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another team's provider: %v", err)
	}

	// Another node's write lands between Begin and Commit: the write is
	// re-run on the newer view, so its If-Match sees the new version.
	log.race = func() {
		if _, err := b.UpdateProvider("team_a", p.ID, 0, func(p *Provider) error { p.Name = "raced"; return nil }); err != nil {
			t.Error(err)
		}
	}
	if _, err := a.UpdateProvider("team_a", p.ID, 2, func(p *Provider) error { p.Name = "late"; return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("If-Match across a raced write: %v", err)
	}

	// Two nodes create the same team name at once: the loser's write is
	// re-run on the view that has the winner's team, and refused.
	log.race = func() {
		if err := b.PutTeam(&Team{ID: NewID(PrefixTeam), Name: "acme", CreatedAt: now}); err != nil {
			t.Error(err)
		}
	}
	if err := a.PutTeam(&Team{ID: NewID(PrefixTeam), Name: "acme", CreatedAt: now}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second team named acme: %v", err)
	}

	// The provider cap holds across nodes: b takes team_c's last place
	// while a's create is in flight; a's re-run counts it.
	newP := func(name string) *Provider {
		return &Provider{ID: NewID(PrefixProvider), TeamID: "team_c", Name: name, Type: TypeSMTP, CreatedAt: now}
	}
	if err := a.CreateOwnProvider(newP("first"), 2); err != nil {
		t.Fatal(err)
	}
	log.race = func() {
		if err := b.CreateOwnProvider(newP("second-b"), 2); err != nil {
			t.Error(err)
		}
	}
	if err := a.CreateOwnProvider(newP("second-a"), 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("a third provider under a cap of 2: %v", err)
	}

	// The log is down: the write fails whole and the writer's view is
	// unchanged.
	log.fail = ErrUnavailable
	before := log.commits
	if err := a.DeleteProvider("team_a", p.ID, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("delete with the log down: %v", err)
	}
	if _, err := a.Provider(p.ID); err != nil {
		t.Fatalf("a refused delete removed the provider locally: %v", err)
	}
	log.fail = nil
	if err := a.DeleteProvider("team_a", p.ID, 0); err != nil || log.commits != before+1 {
		t.Fatalf("delete after the log returned: %v (%d commits)", err, log.commits-before)
	}
	if ps, _ := b.Providers("team_a"); len(ps) != 0 {
		t.Fatalf("b still lists %d providers", len(ps))
	}
}

// TestReplaceRecords: a reload makes the view exactly the log's records,
// and a change naming a bucket outside the state of record is refused.
func TestReplaceRecords(t *testing.T) {
	a, b := openTemp(t), openTemp(t)
	now := time.Now().UTC()
	for _, name := range []string{"one", "two"} {
		if err := a.CreateGroup(&DeliveryGroup{ID: NewID(PrefixGroup), TeamID: "team_a", Name: name, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	stray := &DeliveryGroup{ID: NewID(PrefixGroup), TeamID: "team_a", Name: "stray", CreatedAt: now}
	if err := b.CreateGroup(stray); err != nil {
		t.Fatal(err)
	}
	var all []Change
	if err := a.ExportRecords(func(c Change) error { all = append(all, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.ReplaceRecords(all); err != nil {
		t.Fatal(err)
	}
	if gs, _ := b.Groups("team_a"); len(gs) != 2 || gs[0].Name != "one" {
		t.Fatalf("groups after reload: %v", gs)
	}
	if n, _ := b.CountRecords(); n != len(all) {
		t.Fatalf("b holds %d keys, the log %d", n, len(all))
	}
	if err := b.ApplyChanges([]Change{{Bucket: "messages", Key: []byte("eml_x"), Value: []byte("{}")}}); err == nil {
		t.Fatal("a change to the spool was applied")
	}
}
