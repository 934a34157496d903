package relay

import (
	"bytes"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// TestQueuedBareNewlinesLeaveClean: a body already in the queue with bare
// CR and LF (accepted by a version before they were refused) reaches the
// provider with CRLF line ends only, so an upstream cannot split it.
func TestQueuedBareNewlinesLeaveClean(t *testing.T) {
	h := newHarness(t, nil)
	enqueueAndWaitSend(t, h, "Subject: old\r\n\r\nhi\r.\rMAIL FROM:<evil@x.test>\nRCPT TO:<v@y.test>\r\n")
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if len(h.fake.bodies) != 1 {
		t.Fatalf("%d sends", len(h.fake.bodies))
	}
	want := "Subject: old\r\n\r\nhi\r\n.\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\n"
	if got := h.fake.bodies[0]; !bytes.Equal(got, []byte(want)) {
		t.Fatalf("provider got %q, want %q", got, want)
	}
}

// enqueueAndWaitSend puts a message with body straight into h's queue
// (as a version before a check would have) and waits, 10 s at most, for
// the fake provider's first send.
func enqueueAndWaitSend(t *testing.T, h *harness, body string) {
	t.Helper()
	now := time.Now().UTC()
	m := &store.Message{ID: store.NewID(store.PrefixMessage), TeamID: h.team, CredentialID: h.keyID, From: "a@example.com",
		Status: state.MessagePending, Recipients: []store.Recipient{{Address: "b@example.com", Status: state.MessagePending}},
		CreatedAt: now, NextAttemptAt: now}
	if err := h.store.Enqueue(m, []byte(body)); err != nil {
		t.Fatal(err)
	}
	h.sched.Kick()
	deadline := time.Now().Add(10 * time.Second)
	for h.fake.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // poll with a deadline
	}
}

// prependShaper adds its header bytes, bare line ends and all, to every
// body; with nothing to add it returns the body it was given.
type prependShaper struct{ add string }

func (p prependShaper) Shape(m *store.Message, _ *store.Provider, body []byte) ([]byte, string, error) {
	if p.add == "" {
		return body, m.From, nil
	}
	return append([]byte(p.add), body...), m.From, nil
}

// TestShapedBytesLeaveClean: bytes a shaper writes are held to the same
// line ends as the stored body (the body itself is checked once, before
// shaping, and not again when the shaper passed it through).
func TestShapedBytesLeaveClean(t *testing.T) {
	for _, tc := range []struct{ add, want string }{
		{"", "Subject: s\r\n\r\nhi\r\n"},
		{"X-Shaped: a\nb\r", "X-Shaped: a\r\nb\r\nSubject: s\r\n\r\nhi\r\n"},
	} {
		h := newHarnessClock(t, nil, func(c *SchedulerConfig) { c.Shaper = prependShaper{tc.add} }, nil)
		enqueueAndWaitSend(t, h, "Subject: s\r\n\r\nhi\r\n")
		h.fake.mu.Lock()
		if len(h.fake.bodies) != 1 {
			t.Fatalf("shaper adding %q: %d sends", tc.add, len(h.fake.bodies))
		}
		if got := h.fake.bodies[0]; !bytes.Equal(got, []byte(tc.want)) {
			t.Errorf("shaper adding %q: provider got %q, want %q", tc.add, got, tc.want)
		}
		h.fake.mu.Unlock()
	}
}
