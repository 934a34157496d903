package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// bWaiting indexes the queued messages that wait for a provider to become
// usable (Message.Waiting is set): team id ‖ 0x00 ‖ message id → nil.
//
// The due index alone says when each of them looks again; this index lets
// the scheduler find a team's waiting messages at once when something
// makes a provider usable earlier than that (an operator's successful test
// clears the breaker, a provider is activated), without reading the whole
// queue. It is a hint: updateMessage keeps it in step with the records,
// and the scheduler re-checks each record before acting on it.
//
// The bucket is created on first use, so stores written before it existed
// need no migration (their waiting messages are found through the due
// index, as before).
var bWaiting = []byte("waiting")

func waitingKey(teamID, id string) []byte {
	k := make([]byte, 0, len(teamID)+1+len(id))
	k = append(k, teamID...)
	k = append(k, 0)
	return append(k, id...)
}

// waits reports whether m belongs in the waiting index.
func waits(m *Message) bool { return m.State == StateQueued && len(m.Waiting) > 0 }

// syncWaiting puts or deletes m's waiting entry after a write (was: whether
// it waited before). A waiting message is put even when it waited before:
// records written by builds without the index (or restored from their
// backups) enter it at their next re-pick; the put of a present key costs
// little.
func syncWaiting(tx *bolt.Tx, m *Message, was bool) error {
	now := waits(m)
	if !now && !was {
		return nil
	}
	if now {
		b, err := tx.CreateBucketIfNotExists(bWaiting)
		if err != nil {
			return err
		}
		return b.Put(waitingKey(m.TeamID, m.ID), nil)
	}
	if b := tx.Bucket(bWaiting); b != nil {
		return b.Delete(waitingKey(m.TeamID, m.ID))
	}
	return nil
}

// Waiting returns up to limit IDs of the team's waiting messages that come
// after the message ID after ("" for the first), in ID order (acceptance
// order), skipping those skip reports true for. last is the last ID looked
// at (skipped ones included), to pass as after for the next page; more
// reports whether there may be further entries.
func (s *Store) Waiting(teamID, after string, limit int, skip func(id string) bool) (ids []string, last string, more bool, err error) {
	prefix := waitingKey(teamID, "")
	last = after
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, _ := c.Seek(waitingKey(teamID, after))
		if after != "" && k != nil && bytes.Equal(k, waitingKey(teamID, after)) {
			k, _ = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(ids) >= limit {
				more = true
				return nil
			}
			id := string(k[len(prefix):])
			last = id
			if skip != nil && skip(id) {
				continue
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids, last, more, err
}

// WaitingTeams lists the teams that have waiting messages.
func (s *Store) WaitingTeams() ([]string, error) {
	var teams []string
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				k, _ = c.Next()
				continue
			}
			teams = append(teams, string(k[:i]))
			// Skip the rest of this team: seek past its prefix.
			k, _ = c.Seek(append(append([]byte(nil), k[:i]...), 1))
		}
		return nil
	})
	return teams, err
}
