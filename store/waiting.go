package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Waiting messages and wakes.
//
// The due index (bDue) is the one thing the scheduler reads to know what
// to send. A queued message that no provider in its scope can take now
// (pulled by the breaker, over quota, just failed by every provider) is
// parked: its record's Waiting says why, and its due entry sits at its
// NextAttemptAt, the safety-net time routing gives (end of the pull, next
// quota window). bWaiting indexes such messages by team:
//
//	team id ‖ 0x00 ‖ message id → be64(due entry's nanos) ‖ be64(NextAttemptAt's nanos)
//
// (schema 5; under schema 4 the value was empty and the due entry always
// at NextAttemptAt: migrateWaitingDue, step 4 → 5, fills it in). When something may make one of the
// team's providers usable earlier, WakeTeam moves every such due entry to
// now in one index-only transaction and the scheduler's loop finds them
// due. A woken message whose pick still finds nothing goes back to its
// NextAttemptAt (Repark), again index-only: its record is never rewritten
// by a wake.
//
// A pick that ran before a wake but whose park commits after it would
// leave the message at its safety-net time, missed by the wake. Each wake
// therefore counts up the team's wake generation (bWakeGen) in its
// transaction, and a park (ParkMessage, Repark) carries the generation
// read before its pick: if it moved, the message is left due now instead.
// Park and wake are both transactions of the one committer, so one of
// them comes first: either the wake sees the parked entry, or the park
// sees the new generation.
//
// Every provider write counts up its team's generation in its own
// transaction as well (bumpWakeGen): a pick that ran before an operator
// added or activated a provider parks due now, even when the team had no
// waiting entry yet for the scheduler's wake to move. The store also
// remembers which teams' providers changed (ProviderChangedTeams), so the
// scheduler wakes only those teams, not every team with waiting mail.
var (
	bWaiting = []byte("waiting")
	bWakeGen = []byte("wake_gen") // team id → be64 count of wakes
)

// wakeChunk bounds how many waiting entries one wake transaction moves,
// so a wake of a huge queue never holds one giant dirty set (and delays
// every acceptance waiting for the committer) while it runs.
var wakeChunk = 4096 // a variable for the tests

func waitingKey(teamID, id string) []byte {
	k := make([]byte, 0, len(teamID)+1+len(id))
	k = append(k, teamID...)
	k = append(k, 0)
	return append(k, id...)
}

func waitingValue(due, park time.Time) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(due.UnixNano()))
	binary.BigEndian.PutUint64(v[8:], uint64(park.UnixNano()))
	return v
}

// waits reports whether m belongs in the waiting index.
func waits(m *Message) bool { return m.State == StateQueued && len(m.Waiting) > 0 }

// dueAt is the time of stored queued message m's entry in bDue: the one
// its waiting entry records (a wake moved it), else its NextAttemptAt.
func dueAt(tx *bolt.Tx, m *Message) time.Time {
	if waits(m) {
		if b := tx.Bucket(bWaiting); b != nil {
			if v := b.Get(waitingKey(m.TeamID, m.ID)); len(v) == 16 {
				return time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
		}
	}
	return m.NextAttemptAt
}

// syncWaiting puts or deletes m's waiting entry after a write (was: whether
// it waited before; due: where its bDue entry now is). A waiting message
// is put even when it waited before: the entry carries its due times, and
// records written by builds without the index enter it at their next park.
func syncWaiting(tx *bolt.Tx, m *Message, was bool, due time.Time) error {
	now := waits(m)
	if !now && !was {
		return nil
	}
	if now {
		b, err := tx.CreateBucketIfNotExists(bWaiting)
		if err != nil {
			return err
		}
		return b.Put(waitingKey(m.TeamID, m.ID), waitingValue(due, m.NextAttemptAt))
	}
	if b := tx.Bucket(bWaiting); b != nil {
		return b.Delete(waitingKey(m.TeamID, m.ID))
	}
	return nil
}

func wakeGen(tx *bolt.Tx, teamID string) uint64 {
	if b := tx.Bucket(bWakeGen); b != nil {
		if v := b.Get([]byte(teamID)); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
	}
	return 0
}

// bumpWakeGen counts up the team's wake generation in tx.
func bumpWakeGen(tx *bolt.Tx, teamID string) error {
	gb, err := tx.CreateBucketIfNotExists(bWakeGen)
	if err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], wakeGen(tx, teamID)+1)
	return gb.Put([]byte(teamID), v[:])
}

// providersChanged is called after every provider write: the provider
// counter moves (readers reload their caches), and a committed write
// (err nil) records its team for ProviderChangedTeams. The team goes in
// before the counter moves, so a reader that sees the new counter finds
// it.
func (s *Store) providersChanged(err error, teamID string) {
	if err == nil && teamID != "" {
		s.changedMu.Lock()
		if s.changedTeams == nil {
			s.changedTeams = map[string]struct{}{}
		}
		s.changedTeams[teamID] = struct{}{}
		s.changedMu.Unlock()
	}
	s.providersGen.Add(1)
}

// ProviderChangedTeams returns, and forgets, the teams whose providers
// were written since the last call. The scheduler wakes those teams only:
// a change to one team's providers cannot make another team's usable.
func (s *Store) ProviderChangedTeams() []string {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	teams := make([]string, 0, len(s.changedTeams))
	for t := range s.changedTeams {
		teams = append(teams, t)
	}
	clear(s.changedTeams)
	return teams
}

// WakeGen returns the team's wake generation. The scheduler reads it
// before a pick and hands it to ParkMessage or Repark.
func (s *Store) WakeGen(teamID string) (gen uint64, err error) {
	err = s.view(func(tx *bolt.Tx) error { gen = wakeGen(tx, teamID); return nil })
	return gen, err
}

// parking is what ParkMessage adds to a message write: the wake generation
// its pick saw, and the time a raced wake makes it due at.
type parking struct {
	seen uint64
	now  time.Time
}

// ParkMessage is UpdateMessage for a write that may leave the message
// waiting (fn sets Waiting and NextAttemptAt): seen is the team's wake
// generation read before the pick that found no provider. If the team was
// woken since, the pick may have missed what the wake was about, so the
// message is left due at now (still waiting, its NextAttemptAt kept)
// instead of at its NextAttemptAt.
func (s *Store) ParkMessage(id string, seen uint64, now time.Time, fn func(*Message) error) (*Message, error) {
	return s.updateMessage(id, fn, nil, &parking{seen: seen, now: now})
}

// Repark puts a woken message whose pick still found no provider back at
// its NextAttemptAt, touching only the indexes, unless the team was woken
// again since seen (then it stays due: the newer wake may help it). A
// message no longer waiting is left alone.
func (s *Store) Repark(teamID, id string, seen uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWaiting)
		if b == nil || wakeGen(tx, teamID) != seen {
			return nil
		}
		k := waitingKey(teamID, id)
		v := b.Get(k)
		if len(v) != 16 || bytes.Equal(v[:8], v[8:]) {
			return nil // not waiting, or not woken
		}
		due, park := time.Unix(0, int64(binary.BigEndian.Uint64(v))), time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
		if err := moveDue(tx, id, due, park); err != nil {
			return err
		}
		return b.Put(k, waitingValue(park, park))
	})
}

func moveDue(tx *bolt.Tx, id string, from, to time.Time) error {
	due := tx.Bucket(bDue)
	if err := due.Delete(dueKey(from, id)); err != nil {
		return err
	}
	return due.Put(dueKey(to, id), nil)
}

// WakeTeam makes every waiting message of the team due at now and counts
// up its wake generation, touching only the indexes; it returns how many
// entries it moved. The generation goes up in the first transaction,
// before any entry moves, so a park committed after it stays due (see
// ParkMessage); one committed before it is in the index the later
// transactions walk.
func (s *Store) WakeTeam(teamID string, now time.Time) (moved int, err error) {
	return s.WakeTeamUpTo(teamID, now, 0)
}

// WakeTeamUpTo is WakeTeam for at most limit waiting messages (0: all),
// oldest ids first; entries already due count towards the limit (they
// will be picked anyway). It is for a cause that helps only a few
// messages (one quota unit handed back): waking the team's whole queue
// for it would cost a write per waiting message each time.
func (s *Store) WakeTeamUpTo(teamID string, now time.Time, limit int) (moved int, err error) {
	prefix := waitingKey(teamID, "")
	after, first := prefix, true
	seen := 0
	for {
		var n, walked int
		var last []byte
		more := false
		err := s.update(func(tx *bolt.Tx) error {
			n, walked, last, more = 0, 0, nil, false
			if first {
				if err := bumpWakeGen(tx, teamID); err != nil {
					return err
				}
			}
			b := tx.Bucket(bWaiting)
			if b == nil {
				return nil
			}
			// Collect first: writing a bucket while a cursor walks it
			// can make the cursor skip keys.
			type entry struct{ k, v []byte }
			var page []entry
			c := b.Cursor()
			k, v := c.Seek(after)
			if !first && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if len(page) == wakeChunk || limit > 0 && seen+len(page) == limit {
					more = len(page) == wakeChunk
					break
				}
				page = append(page, entry{bytes.Clone(k), bytes.Clone(v)})
			}
			walked = len(page)
			for _, e := range page {
				last = e.k
				id := string(e.k[len(prefix):])
				if len(e.v) != 16 {
					continue // not written by this layout (migrateWaitingDue fills them)
				}
				due, park := time.Unix(0, int64(binary.BigEndian.Uint64(e.v))), time.Unix(0, int64(binary.BigEndian.Uint64(e.v[8:])))
				if !due.After(now) {
					continue // due already
				}
				if err := moveDue(tx, id, due, now); err != nil {
					return err
				}
				if err := b.Put(e.k, waitingValue(now, park)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return moved, err
		}
		first = false
		moved += n
		seen += walked
		if !more {
			return moved, nil
		}
		after = last
	}
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

// migrateWaitingDue is step 4 → 5, chunked (batchFn): waiting entries
// after the cursor, up to limit, get their value (due entry and
// NextAttemptAt, both NextAttemptAt then, since no wake moved them), so
// that a wake can move them without reading the records; an entry whose
// message no longer waits is dropped. A binary before step 5 must not open
// the file: it would not know a woken entry's due time and leave a stray
// entry in bDue. Keys are collected before any is written (bbolt cursors
// do not survive writes to their bucket); the next batch seeks past the
// last, whether it was kept or dropped.
func migrateWaitingDue(tx *bolt.Tx, after []byte, limit int) (last []byte, n int, done bool, err error) {
	b := tx.Bucket(bWaiting)
	if b == nil {
		return nil, 0, true, nil // created with the first waiting message
	}
	var keys [][]byte
	c := b.Cursor()
	k, _ := seekAfter(c, after)
	for ; k != nil && len(keys) < limit; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	done = k == nil
	for _, k := range keys {
		i := bytes.IndexByte(k, 0)
		var m Message
		err := errNotWaiting
		if i >= 0 {
			err = getJSON(tx.Bucket(bMessages), string(k[i+1:]), &m)
		}
		if err == nil && (!waits(&m) || m.TeamID != string(k[:i])) {
			err = errNotWaiting
		}
		switch {
		case err == nil:
			err = b.Put(k, waitingValue(m.NextAttemptAt, m.NextAttemptAt))
		case errors.Is(err, ErrNotFound) || errors.Is(err, errNotWaiting):
			err = b.Delete(k)
		}
		if err != nil {
			return nil, 0, false, fmt.Errorf("waiting entry %q: %w", k, err)
		}
	}
	if len(keys) > 0 {
		last = keys[len(keys)-1]
	}
	return last, len(keys), done, nil
}

// countWaiting is the number of waiting entries, for the progress log.
func countWaiting(tx *bolt.Tx) int { return keyCount(tx, bWaiting) }

var errNotWaiting = errors.New("not waiting")
