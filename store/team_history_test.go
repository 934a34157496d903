package store

import (
	"fmt"
	"github.com/smtpmux/smtpmux/internal/state"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// historyFixture fills s with messages of three teams through every path
// that writes a message (Enqueue, UpdateMessage with attempts, statuses and
// recipient results changing, LoadHistory, a retention sweep) and returns
// the team IDs.
func historyFixture(t *testing.T, s *Store, now time.Time) []string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	teams := []string{"team_a", "team_b", "team_c"}
	provs := []string{"dprov_1", "dprov_2", "dprov_3"}
	statuses := []state.Message{state.MessagePending, state.MessageSent, state.MessageFailed, state.MessageRejected}
	var ids []string
	for i := 0; i < 300; i++ {
		at := now.Add(-time.Duration(rng.IntN(9*24*60)) * time.Minute)
		m := &Message{ID: NewIDAt(PrefixMessage, at), TeamID: teams[i%3], From: "a@example.com",
			Recipients: []Recipient{{Address: "x@example.net", Status: state.MessagePending}, {Address: "y@example.net", Status: state.MessagePending}},
			Status:     state.MessagePending, NextAttemptAt: at, CreatedAt: at}
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	for i, id := range ids {
		for step := 0; step < i%4; step++ {
			_, err := s.UpdateMessage(id, func(m *Message) error {
				p := provs[rng.IntN(3)]
				m.Attempts = append(m.Attempts, Attempt{N: len(m.Attempts) + 1, ProviderID: p, Status: state.AttemptDeferred})
				for j := range m.Recipients {
					if rng.IntN(2) == 0 {
						done := now.Add(-time.Duration(rng.IntN(3*24)) * time.Hour)
						m.Recipients[j].Status, m.Recipients[j].UpdatedAt = statuses[rng.IntN(4)], &done
						if rng.IntN(2) == 0 {
							m.Recipients[j].ProviderID = provs[rng.IntN(3)]
						}
					}
				}
				m.Status = statuses[rng.IntN(4)]
				if step == 2 {
					m.State, m.UpdatedAt = StateDone, m.CreatedAt
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var bulk []*Message
	for i := 0; i < 50; i++ {
		at := now.Add(-time.Duration(rng.IntN(9*24)) * time.Hour)
		bulk = append(bulk, &Message{ID: NewIDAt(PrefixMessage, at), TeamID: teams[i%3], Status: state.MessageSent,
			Recipients: []Recipient{{Address: "z@example.net", Status: state.MessageSent, ProviderID: provs[i%3]}},
			CreatedAt:  at, UpdatedAt: at})
	}
	if err := s.LoadHistory(bulk); err != nil {
		t.Fatal(err)
	}
	// Retention: messages finished more than 5 days ago go.
	for after := ""; ; {
		n, next, err := s.SweepMessages(now.Add(-5*24*time.Hour), after, 20)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && next == "" {
			break
		}
		after = next
	}
	return teams
}

// recount derives the index and the counters from the message records
// alone, and reads what the store holds in their buckets.
func recount(t *testing.T, s *Store) (wantIdx, gotIdx []string, want, got map[string]int64) {
	t.Helper()
	want, got = map[string]int64{}, map[string]int64{}
	s.view(func(tx *bolt.Tx) error {
		tx.Bucket(bMessages).ForEach(func(k, v []byte) error {
			var m Message
			if err := jsonUnmarshal(v, &m); err != nil {
				t.Fatal(err)
			}
			wantIdx = append(wantIdx, string(teamIndexKey(m.TeamID, m.ID)))
			for k := range filterKeys(&m) {
				wantIdx = append(wantIdx, k)
			}
			for k, n := range messageCounts(&m) {
				want[k] += n
			}
			return nil
		})
		tx.Bucket(bMsgByTeam).ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				t.Fatalf("index key %q has no creation time", k)
			}
			gotIdx = append(gotIdx, string(k))
			return nil
		})
		for k, v := range filterIndexOf(tx) {
			if len(v) != 8 {
				t.Fatalf("index key %q has no creation time", k)
			}
			gotIdx = append(gotIdx, k)
		}
		maps.Copy(got, countsOf(tx))
		return nil
	})
	slices.Sort(wantIdx)
	slices.Sort(gotIdx)
	return
}

// TestTeamHistoryFollowsRecords: after creations, updates, bulk loads and
// retention deletes, the team index holds exactly the stored messages and
// every counter equals the sum of the records' contributions.
func TestTeamHistoryFollowsRecords(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	historyFixture(t, s, now)
	wantIdx, gotIdx, want, got := recount(t, s)
	if n, _ := s.messageCount(); n == 0 || n == 350 {
		t.Fatalf("%d messages left: the fixture should have swept some", len(wantIdx))
	}
	if !slices.Equal(wantIdx, gotIdx) {
		t.Fatalf("team indexes have %d keys, the records want %d", len(gotIdx), len(wantIdx))
	}
	if !maps.Equal(want, got) {
		t.Fatalf("counters differ from the records:\nwant %d keys\ngot  %d keys", len(want), len(got))
	}
}

// TestTeamHistoryReads: MessagesBetween, MessagesDesc and its by-status
// and by-provider forms, walking the team indexes, return exactly the team's messages a walk over every record finds,
// in the same order, for open and bounded windows and cursors.
func TestTeamHistoryReads(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	teams := historyFixture(t, s, now)
	var all []*Message
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bMessages).ForEach(func(k, v []byte) error {
			var m Message
			if err := jsonUnmarshal(v, &m); err != nil {
				return err
			}
			all = append(all, &m)
			return nil
		})
	})
	for _, team := range teams {
		for _, w := range []struct{ from, to time.Time }{{}, {now.Add(-48 * time.Hour), time.Time{}},
			{now.Add(-72 * time.Hour), now.Add(-24 * time.Hour)}} {
			var want []string
			for _, m := range all {
				if m.TeamID == team && (w.from.IsZero() || !m.CreatedAt.Before(w.from)) && (w.to.IsZero() || m.CreatedAt.Before(w.to)) {
					want = append(want, m.ID)
				}
			}
			var asc []string
			if err := s.MessagesBetween(team, w.from, w.to, func(m *Message) bool {
				asc = append(asc, m.ID)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(asc, want) {
				t.Fatalf("%s %v: MessagesBetween gave %d, want %d", team, w, len(asc), len(want))
			}
			for _, by := range []struct {
				name string
				walk func(string, func(*Message) bool) error
				keep func(*Message) bool
			}{
				{"status failed", func(before string, fn func(*Message) bool) error {
					return s.MessagesDescByStatus(team, string(state.MessageFailed), before, w.from, w.to, fn)
				}, func(m *Message) bool { return m.Status == state.MessageFailed }},
				{"provider 2", func(before string, fn func(*Message) bool) error {
					return s.MessagesDescByProvider(team, "dprov_2", before, w.from, w.to, fn)
				}, func(m *Message) bool { return m.UsedProvider("dprov_2") }},
			} {
				var want2, got2 []string
				for _, m := range all {
					if slices.Contains(want, m.ID) && by.keep(m) {
						want2 = append(want2, m.ID)
					}
				}
				slices.Sort(want2)
				if err := by.walk("", func(m *Message) bool { got2 = append(got2, m.ID); return true }); err != nil {
					t.Fatal(err)
				}
				slices.Reverse(got2)
				if !slices.Equal(got2, want2) || len(want2) == 0 {
					t.Fatalf("%s %v by %s: %d messages, want %d", team, w, by.name, len(got2), len(want2))
				}
			}
			// Descending, in pages of 7 continued by cursor.
			var desc []string
			for before := ""; ; {
				var page []string
				if err := s.MessagesDesc(team, before, w.from, w.to, func(m *Message) bool {
					page = append(page, m.ID)
					return len(page) < 7
				}); err != nil {
					t.Fatal(err)
				}
				desc = append(desc, page...)
				if len(page) < 7 {
					break
				}
				before = page[len(page)-1]
			}
			slices.Reverse(desc)
			if !slices.Equal(desc, want) {
				t.Fatalf("%s %v: MessagesDesc gave %d, want %d", team, w, len(desc), len(want))
			}
		}
	}
}

// TestMigrateTeamHistory: a version 5 file (no team history buckets) gets
// its messages indexed and counted by the step to 6, exactly as if they
// had been written by this build.
func TestMigrateTeamHistory(t *testing.T) {
	s, path := openTest(t)
	historyFixture(t, s, time.Now().UTC())
	_, _, want, _ := recount(t, s)
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMsgByTeam, bMsgCounts, bMsgByFilter, bMsgCountLog} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bMeta).Put(keySchemaVersion, be64(5))
	})
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	wantIdx, gotIdx, _, got := recount(t, s2)
	if !slices.Equal(wantIdx, gotIdx) || !maps.Equal(want, got) {
		t.Fatalf("after the migration: index %d/%d keys, counters %d/%d keys (%v)",
			len(gotIdx), len(wantIdx), len(got), len(want), fmt.Sprint(maps.Equal(want, got)))
	}
	s2.Close()
	if v, _ := rawVersion(t, path); v != SchemaVersion {
		t.Fatalf("version %d after the migration", v)
	}
}

func (s *Store) messageCount() (n int, err error) {
	err = s.view(func(tx *bolt.Tx) error { n = tx.Bucket(bMessages).Stats().KeyN; return nil })
	return
}
