package store

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestWaitingIndexFollowsRecords: a queued message with Waiting set is in
// its team's waiting index, whatever write put it there or took it out
// (claim, defer without waiting, finish), and the index pages in ID order
// without loading more than a page.
func TestWaitingIndexFollowsRecords(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	why := json.RawMessage(`{"waiting":true}`)
	var ids []string
	for i := 0; i < 5; i++ {
		m := newMsg(now)
		if i == 4 {
			m.TeamID = "team_y"
		}
		if err := s.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	if got, _, _, err := s.Waiting("team_x", "", 10, nil); err != nil || len(got) != 0 {
		t.Fatalf("nothing waits yet: %v %v", got, err)
	}
	for _, id := range ids {
		if _, err := s.UpdateMessage(id, func(m *Message) error {
			m.Waiting, m.NextAttemptAt = why, now.Add(time.Hour)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Pages of two, in ID order, for team_x only.
	var all []string
	after := ""
	for {
		page, last, more, err := s.Waiting("team_x", after, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, limit 2", len(page))
		}
		all = append(all, page...)
		after = last
		if !more {
			break
		}
	}
	if !slices.Equal(all, ids[:4]) {
		t.Fatalf("waiting team_x = %v, want %v", all, ids[:4])
	}
	if teams, err := s.WaitingTeams(); err != nil || !slices.Equal(teams, []string{"team_x", "team_y"}) {
		t.Fatalf("teams = %v, %v", teams, err)
	}
	// skip leaves an entry out but moves the cursor past it.
	page, last, _, _ := s.Waiting("team_x", "", 1, func(id string) bool { return id == ids[0] })
	if !slices.Equal(page, ids[1:2]) || last != ids[1] {
		t.Fatalf("skip: page %v last %v", page, last)
	}

	// Claimed: out. Deferred without waiting: stays out. Waiting again: in.
	// Done: out.
	if _, err := s.UpdateMessage(ids[0], func(m *Message) error { m.State, m.Waiting = StateInflight, nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(ids[0], func(m *Message) error { m.State = StateQueued; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMessage(ids[1], func(m *Message) error { m.State = StateDone; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := s.Waiting("team_x", "", 10, nil); !slices.Equal(got, ids[2:4]) {
		t.Fatalf("after claim and finish: %v, want %v", got, ids[2:4])
	}
	if _, err := s.UpdateMessage(ids[0], func(m *Message) error { m.Waiting = why; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := s.Waiting("team_x", "", 10, nil); !slices.Equal(got, []string{ids[0], ids[2], ids[3]}) {
		t.Fatalf("waiting again: %v", got)
	}
}
