package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// addFeedback records f against rcpt of message id, as the relay and the
// bounce listener do, through UpdateMessage.
func addFeedback(t *testing.T, s *Store, id, rcpt string, f Feedback, status string) {
	t.Helper()
	if _, err := s.UpdateMessage(id, func(m *Message) error {
		for i := range m.Recipients {
			if m.Recipients[i].Address == rcpt {
				if f.Kind != "" {
					m.Recipients[i].Feedback = append(m.Recipients[i].Feedback, f)
				}
				if status != "" {
					m.Recipients[i].Status = state.Message(status)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFeedbackSuppresses: a hard bounce or complaint suppresses at once,
// in the message's own write; soft bounces only after the limit in a row,
// and a delivery in between starts the count again. Other teams are not
// touched.
func TestFeedbackSuppresses(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	m := newMsg(now)
	m.TeamID = "team_a"
	m.Recipients = []Recipient{{Address: "Hard@x.test", Status: state.MessagePending}, {Address: "soft@x.test", Status: state.MessagePending},
		{Address: "fbl@x.test", Status: state.MessagePending}}
	if err := s.Enqueue(m, []byte("x")); err != nil {
		t.Fatal(err)
	}
	addFeedback(t, s, m.ID, "Hard@x.test", Feedback{Kind: FeedbackBounce, Type: BounceHard, Source: "dsn", Status: "5.1.1", At: now}, "")
	addFeedback(t, s, m.ID, "fbl@x.test", Feedback{Kind: FeedbackComplaint, Type: "abuse", Source: "arf", At: now}, "")
	if sup, err := s.Suppressed("team_a", "hard@X.test"); err != nil || sup == nil || sup.Reason != SuppressHardBounce || sup.MessageID != m.ID || sup.Source != "dsn" {
		t.Fatalf("hard: %+v %v", sup, err)
	}
	if sup, _ := s.Suppressed("team_a", "fbl@x.test"); sup == nil || sup.Reason != SuppressComplaint || sup.Detail != "abuse" {
		t.Fatalf("complaint: %+v", sup)
	}
	if sup, _ := s.Suppressed("team_b", "hard@x.test"); sup != nil {
		t.Fatalf("another team's list got it: %+v", sup)
	}
	soft := Feedback{Kind: FeedbackBounce, Type: BounceSoft, Source: "smtp", At: now}
	addFeedback(t, s, m.ID, "soft@x.test", soft, "")
	addFeedback(t, s, m.ID, "soft@x.test", soft, "")
	addFeedback(t, s, m.ID, "soft@x.test", Feedback{}, "sent") // a delivery: the count starts again
	addFeedback(t, s, m.ID, "soft@x.test", soft, "failed")
	addFeedback(t, s, m.ID, "soft@x.test", soft, "")
	if sup, _ := s.Suppressed("team_a", "soft@x.test"); sup != nil {
		t.Fatalf("suppressed after 2 in a row: %+v", sup)
	}
	addFeedback(t, s, m.ID, "soft@x.test", soft, "")
	if sup, _ := s.Suppressed("team_a", "soft@x.test"); sup == nil || sup.Reason != SuppressSoftBounces {
		t.Fatalf("not suppressed after 3 in a row: %+v", sup)
	}
	// Rewriting the record without new feedback adds nothing.
	if err := s.DeleteSuppression("team_a", "hard@x.test"); err != nil {
		t.Fatal(err)
	}
	addFeedback(t, s, m.ID, "Hard@x.test", Feedback{}, "")
	if sup, _ := s.Suppressed("team_a", "hard@x.test"); sup != nil {
		t.Fatalf("old feedback re-applied: %+v", sup)
	}
}

// TestSuppressionsScanBounded: a search that matches nothing must not
// walk a team's whole list in one call (a root key can grow the list
// without end): a call reads at most suppressionScanMax entries and says
// where to go on, and following the cursors still finds every match.
func TestSuppressionsScanBounded(t *testing.T) {
	s, _ := openTest(t)
	defer func(n int) { suppressionScanMax = n }(suppressionScanMax)
	suppressionScanMax = 10
	for i := range 35 {
		addr := fmt.Sprintf("a%02d@x.example", i)
		if i == 33 {
			addr = "needle@x.example"
		}
		if _, _, err := s.AddSuppression(&Suppression{TeamID: "team_a", Address: addr, Reason: SuppressManual, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	out, next, err := s.Suppressions("team_a", "", "needle", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 || next == "" {
		t.Fatalf("first call: %d entries, next %q; want none found in the first 10 read, and a cursor", len(out), next)
	}
	var found []string
	calls := 1
	for next != "" {
		if out, next, err = s.Suppressions("team_a", next, "needle", 5); err != nil {
			t.Fatal(err)
		}
		for _, e := range out {
			found = append(found, e.Address)
		}
		if calls++; calls > 10 {
			t.Fatal("the cursors do not move on")
		}
	}
	if len(found) != 1 || found[0] != "needle@x.example" {
		t.Fatalf("following the cursors found %v", found)
	}
	// Without a search, pages are full and end.
	all, after := 0, ""
	for range 10 {
		if out, next, err = s.Suppressions("team_a", after, "", 10); err != nil {
			t.Fatal(err)
		}
		all += len(out)
		if next == "" {
			break
		}
		after = next
	}
	if all != 35 {
		t.Fatalf("paging without search saw %d entries, want 35", all)
	}
}
