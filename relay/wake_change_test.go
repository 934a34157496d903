package relay

import (
	"encoding/binary"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
	bolt "go.etcd.io/bbolt"
)

// newBareScheduler is a scheduler over a fresh store whose loop does not
// run: the test calls its steps by hand to fix an interleaving.
func newBareScheduler(t *testing.T, path string) (*store.Store, *Scheduler) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "r.db")
	}
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, _ := store.NewSealer("test-secret-key-0123456789")
	reg := NewRegistry(st, sealer)
	reg.Register("fake", func(p *store.Provider, _ string) (Provider, error) { return &fakeProvider{}, nil })
	return st, NewScheduler(SchedulerConfig{}, st, reg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// enqueueFor stores a queued message of team, due now.
func enqueueFor(t *testing.T, st *store.Store, team string) string {
	t.Helper()
	now := time.Now().UTC()
	id := store.NewID(store.PrefixMessage)
	if err := st.Enqueue(&store.Message{ID: id, TeamID: team, Scope: store.Scope{Type: "all"},
		Recipients: []store.Recipient{{Address: "b@example.org", Status: state.MessagePending}},
		Status:     state.MessagePending, NextAttemptAt: now, CreatedAt: now}, []byte("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	return id
}

func createFakeProvider(t *testing.T, st *store.Store, team string) string {
	t.Helper()
	id := store.NewID(store.PrefixProvider)
	if err := st.CreateProvider(&store.Provider{ID: id, TeamID: team, Type: "fake",
		Status: state.ProviderActive, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return id
}

// dueSoon lists the messages due within a second.
func dueSoon(t *testing.T, st *store.Store) []string {
	t.Helper()
	ids, _, err := st.Due(time.Now().Add(time.Second), 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// An operator's provider write lands while a pick that found nothing is
// between its pick and its park: the team has no waiting entry yet, so no
// wake can move it. The write counts up the team's wake generation in its
// own transaction (and the poll wakes the changed team), so the park
// leaves the message due now instead of at its safety-net time.
// (The steps of Scheduler.attempt are run by hand to fix the interleaving.)
func TestProviderChangeWakesFirstPark(t *testing.T) {
	st, s := newBareScheduler(t, "")
	team := store.NewID(store.PrefixTeam)
	pg := int64(-1)
	s.wakeOnProviderChange(&pg) // the loop's first turn

	id := enqueueFor(t, st, team)
	// attempt(): the wake generation is read, the pick finds nothing usable.
	gen, _ := st.WakeGen(team)
	// An operator adds (or activates) a provider; the poll notices it.
	createFakeProvider(t, st, team)
	s.wakeOnProviderChange(&pg)
	// attempt() -> noProvider(): the park lands.
	s.requeueWaiting(id, time.Now().Add(maxWait), []byte(`{"waiting":true}`), gen)

	if !s.teamUsable(team) {
		t.Fatal("setup: the team should have a usable provider now")
	}
	if ids := dueSoon(t, st); !slices.Contains(ids, id) {
		t.Fatal("message parked at its safety-net time although its team has a usable provider (the wake missed it)")
	}
}

// The same race without the poll in between: the provider write's own
// transaction moved the team's generation, so the park sees it by
// transaction order, whatever the poll does.
func TestProviderWriteAloneKeepsRacingParkDue(t *testing.T) {
	st, s := newBareScheduler(t, "")
	team := store.NewID(store.PrefixTeam)
	prov := createFakeProvider(t, st, team)
	if _, err := st.UpdateProvider(team, prov, 0, func(p *store.Provider) error {
		p.Status = state.ProviderInactive
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	id := enqueueFor(t, st, team)
	gen, _ := st.WakeGen(team) // attempt(): read before the pick (nothing active)
	if _, err := st.UpdateProvider(team, prov, 0, func(p *store.Provider) error {
		p.Status = state.ProviderActive // the operator activates it
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.requeueWaiting(id, time.Now().Add(maxWait), []byte(`{"waiting":true}`), gen)
	if ids := dueSoon(t, st); !slices.Contains(ids, id) {
		t.Fatal("message parked at its safety-net time although the activation committed before the park")
	}
}

// parkWaiting parks message id of team as waiting until maxWait from now,
// as noProvider does, with the team's current generation.
func parkWaiting(t *testing.T, s *Scheduler, st *store.Store, team, id string) {
	t.Helper()
	gen, err := st.WakeGen(team)
	if err != nil {
		t.Fatal(err)
	}
	s.requeueWaiting(id, time.Now().Add(maxWait), []byte(`{"waiting":true}`), gen)
	if slices.Contains(dueSoon(t, st), id) {
		t.Fatal("setup: the parked message is due now")
	}
}

// A write to team A's provider wakes team A only: team B's waiting
// messages stay at their own due times, and its wake generation does not
// move (so nothing of B's is re-picked).
func TestProviderChangeWakesOnlyItsTeam(t *testing.T) {
	st, s := newBareScheduler(t, "")
	teamA, teamB := store.NewID(store.PrefixTeam), store.NewID(store.PrefixTeam)
	provA := createFakeProvider(t, st, teamA)
	createFakeProvider(t, st, teamB)
	pg := int64(-1)
	s.wakeOnProviderChange(&pg) // the loop's first turn
	msgA, msgB := enqueueFor(t, st, teamA), enqueueFor(t, st, teamB)
	parkWaiting(t, s, st, teamA, msgA)
	parkWaiting(t, s, st, teamB, msgB)
	genB, _ := st.WakeGen(teamB)

	if _, err := st.UpdateProvider(teamA, provA, 0, func(p *store.Provider) error {
		p.Name = "renamed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.wakeOnProviderChange(&pg)

	due := dueSoon(t, st)
	if !slices.Contains(due, msgA) {
		t.Fatal("team A's waiting message was not woken by the change to its provider")
	}
	if slices.Contains(due, msgB) {
		t.Fatal("team B's waiting message was woken by a change to team A's provider")
	}
	if g, _ := st.WakeGen(teamB); g != genB {
		t.Fatalf("team B's wake generation moved from %d to %d", genB, g)
	}
}

// A due entry whose message is missing (or not queued) is dropped by the
// attempt that finds it, so the loop does not find it due at every turn.
func TestStrayDueEntryDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	st, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	team := store.NewID(store.PrefixTeam)
	sent := enqueueFor(t, st, team)
	if _, err := st.UpdateMessage(sent, func(m *store.Message) error {
		m.State, m.Status = store.StateDone, state.MessageSent
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Stray entries, as a bug or an old build could leave them: one for a
	// message that does not exist, one for a finished message.
	missing := store.NewID(store.PrefixMessage)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, id := range []string{missing, sent} {
			k := binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(-time.Minute).UnixNano()))
			if err := tx.Bucket([]byte("due")).Put(append(k, id...), nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	st, s := newBareScheduler(t, path)
	queued := enqueueFor(t, st, team)
	for _, id := range []string{missing, sent} {
		if !slices.Contains(dueSoon(t, st), id) {
			t.Fatalf("setup: stray entry of %s not due", id)
		}
		s.attempt(id)
		if slices.Contains(dueSoon(t, st), id) {
			t.Fatalf("the stray due entry of %s is still there after an attempt found it", id)
		}
	}
	if !slices.Contains(dueSoon(t, st), queued) {
		t.Fatal("a queued message's due entry was dropped")
	}
}
