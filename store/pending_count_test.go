package store

import "testing"

// TestPendingCount: PendingCount agrees with PendingRecipients and, unlike
// it, allocates nothing (the relay asks it several times per message).
func TestPendingCount(t *testing.T) {
	m := &Message{Recipients: []Recipient{{Address: "a", Status: "pending"}, {Address: "b", Status: "sent"}, {Address: "c", Status: "pending"}}}
	if n := m.PendingCount(); n != len(m.PendingRecipients()) || n != 2 {
		t.Fatalf("PendingCount %d, PendingRecipients %v", n, m.PendingRecipients())
	}
	if n := testing.AllocsPerRun(100, func() { m.PendingCount() }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	if (&Message{}).PendingCount() != 0 {
		t.Fatal("no recipients, some pending")
	}
}
