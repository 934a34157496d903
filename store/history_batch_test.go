package store

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// TestMoveBatchMatchesOneByOne: a move step's bulk writes (putHistories,
// dropMains) leave each day file holding exactly the keys and values that
// putHistory, record by record, writes, and leave nothing of the moved
// messages in the main file: no record, index key, list or journal entry,
// and counters that add up to nothing once the log is folded.
func TestMoveBatchMatchesOneByOne(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "m.db"), time.Second, WithoutHistoryMover())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Now().UTC().Add(-30 * time.Hour).Truncate(time.Hour)
	var ms []*Message
	for i := range 600 {
		at := base.Add(time.Duration(i) * 2 * time.Minute) // over two UTC days
		done := at.Add(time.Second)
		m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: fmt.Sprint("team_", i%7), From: "app@example.com",
			Status: state.MessageSent, CreatedAt: at, UpdatedAt: done}
		p1, p2 := fmt.Sprint("prov_", i%5), fmt.Sprint("prov_", (i+1)%5)
		m.Attempts = []Attempt{{N: 1, ProviderID: p1, ProviderType: TypeSES, StartedAt: at, Status: state.AttemptSent, UpstreamID: fmt.Sprint("ses-", i)}}
		m.Recipients = []Recipient{{Address: fmt.Sprintf("a%d@example.net", i), Status: state.MessageSent, ProviderID: p1, UpdatedAt: &done}}
		switch i % 4 {
		case 1: // a second attempt elsewhere, a failed recipient
			m.Attempts = append(m.Attempts, Attempt{N: 2, ProviderID: p2, ProviderType: "smtp", StartedAt: done, Status: state.AttemptFailed})
			m.Recipients = append(m.Recipients, Recipient{Address: "b@example.net", Status: state.MessageFailed, ProviderID: p2})
			m.Status = state.MessageFailed
		case 2: // a bounce and a complaint
			m.Recipients[0].Feedback = []Feedback{{Kind: FeedbackBounce, Type: BounceHard, Source: "dsn"}, {Kind: FeedbackComplaint, Type: "abuse", Source: "arf"}}
		case 3: // rejected before any attempt
			m.Attempts, m.Status = nil, state.MessageRejected
			m.Recipients[0].Status, m.Recipients[0].ProviderID = state.MessageRejected, ""
		}
		ms = append(ms, m)
	}
	if err := s.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	// The reference: each record put alone, in its own day's scratch file.
	ref := map[int64]*bolt.DB{}
	err = s.view(func(tx *bolt.Tx) error {
		for _, m := range ms {
			day := utcDay(m.CreatedAt).Unix()
			if ref[day] == nil {
				db, err := openDayFile(filepath.Join(dir, fmt.Sprint("ref-", day, ".db")), true)
				if err != nil {
					return err
				}
				t.Cleanup(func() { db.Close() })
				ref[day] = db
			}
			raw := bytes.Clone(tx.Bucket(bMessages).Get([]byte(m.ID)))
			var got Message
			if err := jsonUnmarshal(raw, &got); err != nil {
				return err
			}
			if err := ref[day].Update(func(rtx *bolt.Tx) error { return putHistory(rtx, &got, raw) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, more, err := s.MoveHistory(time.Now(), historyMoveBatch)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	if len(ref) != 2 {
		t.Fatalf("%d days, want 2", len(ref))
	}
	for day, db := range ref {
		d, err := s.hist.acquire(time.Unix(day, 0), false)
		if err != nil || d == nil {
			t.Fatalf("day %d: %v, %v", day, d, err)
		}
		want, got := dumpDayBuckets(t, db), dumpDayBuckets(t, d.db)
		s.hist.release(d)
		if len(want) == 0 || len(want) != len(got) {
			t.Fatalf("day %d: %d keys, want %d", day, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("day %d: key %q = %q, want %q", day, k, got[k], v)
			}
		}
	}
	err = s.update(func(tx *bolt.Tx) error {
		if err := foldCountLog(tx); err != nil {
			return err
		}
		for _, b := range [][]byte{bMessages, bMsgByTeam, bMsgByFilter, bMsgCounts, bFinished, bHistJournal} {
			if k, _ := tx.Bucket(b).Cursor().First(); k != nil {
				t.Errorf("main file's %s still holds %q", b, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dumpDayBuckets is a day file's history buckets and its count and latest
// update, as bucket ‖ 0x00 ‖ key → value.
func dumpDayBuckets(t *testing.T, db *bolt.DB) map[string]string {
	out := map[string]string{}
	err := db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMessages, bMsgByTeam, bMsgByFilter, bMsgCounts, hUpstream} {
			tx.Bucket(b).ForEach(func(k, v []byte) error {
				out[string(b)+"\x00"+string(k)] = string(v)
				return nil
			})
		}
		for _, k := range [][]byte{keyDayCount, keyMaxUpdated} {
			out["meta\x00"+string(k)] = string(tx.Bucket(bMeta).Get(k))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMoverYieldsToWaitingWrites: while other writes wait for the
// committer, a move step's main-file deletes go in commits of
// moverSubChunk records, not historyDeleteChunk, and every record still
// leaves the main file once.
func TestMoverYieldsToWaitingWrites(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "m.db"), time.Second, WithoutHistoryMover())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Now().UTC().Add(-time.Hour)
	var ms []*Message
	for i := range 300 {
		ms = append(ms, &Message{ID: NewIDAt(PrefixMessage, at.Add(time.Duration(i)*time.Millisecond)), TeamID: "team_a",
			Status: state.MessageSent, CreatedAt: at, UpdatedAt: at,
			Recipients: []Recipient{{Address: "a@example.net", Status: state.MessageSent, ProviderID: "prov_1"}}})
	}
	if err := s.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	yield := moverYield
	moverYield = func(*Store, time.Time) bool { return true }
	chunks := 1
	historyStepHook = func(step string) error {
		if step == "deleted" {
			chunks++
		}
		return nil
	}
	t.Cleanup(func() { moverYield, historyStepHook = yield, nil })
	n, more, err := s.MoveHistory(time.Now(), historyMoveBatch)
	if err != nil || n != 300 || more {
		t.Fatalf("moved %d (more %v): %v", n, more, err)
	}
	if want := (300 + moverSubChunk - 1) / moverSubChunk; chunks != want {
		t.Fatalf("%d main-file commits, want %d of %d records", chunks, want, moverSubChunk)
	}
	if left, _, err := s.HistoryBacklog(); err != nil || left != 0 {
		t.Fatalf("backlog %d: %v", left, err)
	}
}
