package store

import (
	"errors"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// TestMessageBySESID: an attempt's SES MessageId (own or managed SES) is
// indexed when the attempt records it, other provider types' ids are
// not, and retention's delete drops the entry with the message.
func TestMessageBySESID(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	m := newMsg(now)
	if err := s.Enqueue(m, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MessageBySESID("ses-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before the attempt: %v", err)
	}
	if _, err := s.UpdateMessage(m.ID, func(m *Message) error {
		m.Attempts = append(m.Attempts,
			Attempt{N: 1, ProviderType: TypeSMTP, Status: state.AttemptDeferred, UpstreamID: "smtp-queue-id"},
			Attempt{N: 2, ProviderType: TypeManagedSES, Status: state.AttemptSent, UpstreamID: "ses-1"})
		m.State, m.Status, m.UpdatedAt = StateDone, state.MessageSent, now.Add(-48*time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.MessageBySESID("ses-1"); err != nil || got.ID != m.ID {
		t.Fatalf("by SES id: %v %v", got, err)
	}
	if _, err := s.MessageBySESID("smtp-queue-id"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an SMTP queue id was indexed: %v", err)
	}
	if n, _, err := s.SweepMessages(time.Now().Add(time.Hour), "", 100); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, err := s.MessageBySESID("ses-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after retention: %v", err)
	}
	_ = s.view(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bUpstreamIDs).Stats().KeyN; n != 0 {
			t.Fatalf("%d index entries left after retention", n)
		}
		return nil
	})
}
