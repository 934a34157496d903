package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func reservationsByID(t *testing.T, s *Store) map[string]ManagedReservation {
	t.Helper()
	rs, err := s.ManagedReservations()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]ManagedReservation{}
	for _, r := range rs {
		out[r.MessageID] = r
	}
	return out
}

// TestManagedReservationIndex: a queued message holding managed-account
// reservations is in the index from its enqueue until the claim that
// hands them over; re-picks that leave it queued keep it, and messages
// without reservations never enter.
func TestManagedReservationIndex(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	held, plain := newMsg(now), newMsg(now)
	held.ManagedReserved, held.ManagedProviderID = 2, "dprov_managed"
	for _, m := range []*Message{held, plain} {
		if err := s.Enqueue(m, []byte("body")); err != nil {
			t.Fatal(err)
		}
	}
	got := reservationsByID(t, s)
	if r, ok := got[held.ID]; len(got) != 1 || !ok || r.ProviderID != "dprov_managed" || r.Recipients != 2 || !r.AcceptedAt.Equal(now) {
		t.Fatalf("after enqueue: %+v", got)
	}
	// A re-pick that finds no room leaves it queued and reserved.
	if _, err := s.UpdateMessage(held.ID, func(m *Message) error {
		m.Waiting, m.NextAttemptAt = []byte(`{"reason":"quota"}`), now.Add(time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := reservationsByID(t, s); got[held.ID].Recipients != 2 {
		t.Fatalf("after a re-pick: %+v", got)
	}
	if _, err := s.ClaimMessage(held.ID, func(m *Message) error {
		m.State, m.ManagedReserved = StateInflight, 0
		return nil
	}, "dprov_managed", UsageRecord{}); err != nil {
		t.Fatal(err)
	}
	if got := reservationsByID(t, s); len(got) != 0 {
		t.Fatalf("after the claim: %+v", got)
	}
}

// TestMigrateManagedReservations: a version 2 file (no index) gets an
// entry for each queued message holding reservations at Open.
func TestMigrateManagedReservations(t *testing.T) {
	s, path := openTest(t)
	now := time.Now().UTC()
	held, done := newMsg(now), newMsg(now)
	held.ManagedReserved, held.ManagedProviderID = 1, "dprov_managed"
	done.ManagedReserved, done.ManagedProviderID = 1, "dprov_managed"
	for _, m := range []*Message{held, done} {
		if err := s.Enqueue(m, []byte("body")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpdateMessage(done.ID, func(m *Message) error { m.State = StateDone; return nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bManagedReserved); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(2))
	})
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := reservationsByID(t, s); len(got) != 1 || got[held.ID].Recipients != 1 {
		t.Fatalf("after migrating: %+v, want only %s", got, held.ID)
	}
}
