package relay

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestManagedReservationsAcrossDays: after a restart only today's queued
// reservations count again, and giving back one made on an earlier day
// (its message's first attempt after midnight) frees nothing of today's.
func TestManagedReservationsAcrossDays(t *testing.T) {
	h := newHealth(ManagedLimits{Hourly: 100, Daily: 3})
	p := &store.Provider{ID: "dprov_managed", IsShared: true}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	yesterday := now.Add(-24 * time.Hour)
	h.restoreManaged([]store.ManagedReservation{
		{MessageID: "eml_today", ProviderID: p.ID, AcceptedAt: now.Add(-time.Hour), Recipients: 2},
		{MessageID: "eml_yesterday", ProviderID: p.ID, AcceptedAt: yesterday, Recipients: 5},
	}, now)
	if !h.acceptManaged(p, nil, 1, now) {
		t.Fatal("the 3rd recipient of a limit of 3 (2 restored) was refused: yesterday's reservations were counted")
	}
	if h.acceptManaged(p, nil, 1, now) {
		t.Fatal("the 4th recipient was accepted: today's reservations were not restored")
	}
	h.releaseManaged(p.ID, 5, yesterday)
	if h.acceptManaged(p, nil, 1, now) {
		t.Fatal("giving back yesterday's reservations freed room in today's limit")
	}
	h.releaseManaged(p.ID, 1, now)
	if !h.acceptManaged(p, nil, 1, now) {
		t.Fatal("giving back one of today's reservations did not free its room")
	}
}

// TestManagedReservationFreedWhenNoProviderFailsMessage: a message that
// fails without an attempt (no provider left for it, retries exhausted)
// gives its acceptance reservations back.
func TestManagedReservationFreedWhenNoProviderFailsMessage(t *testing.T) {
	h := newHarness(t, nil)
	p := &store.Provider{ID: "dprov_managed", IsShared: true}
	sched := h.sched
	sched.health.mu.Lock()
	sched.health.managed = ManagedLimits{Hourly: 100, Daily: 2}
	sched.health.mu.Unlock()
	now := time.Now().UTC()
	if !sched.health.acceptManaged(p, nil, 2, now) {
		t.Fatal("two recipients of a limit of 2 refused")
	}
	m := &store.Message{ID: store.NewID(store.PrefixMessage), TeamID: h.team, From: "a@example.com", Status: store.MsgPending,
		Recipients:      []store.Recipient{{Address: "b@example.com", Status: store.MsgPending}, {Address: "c@example.com", Status: store.MsgPending}},
		ManagedReserved: 2, ManagedProviderID: p.ID, ManagedReservedAt: now,
		Retries: len(sched.cfg.RetrySchedule), CreatedAt: now, NextAttemptAt: now.Add(time.Hour)}
	if err := h.store.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	sched.noProvider(m, routing.Explanation{}, nil)
	if got, _ := h.store.Message(m.ID); got.State != store.StateDone || got.ManagedReserved != 0 {
		t.Fatalf("message after no provider: state %s, reserved %d", got.State, got.ManagedReserved)
	}
	if !sched.health.acceptManaged(p, nil, 2, now) {
		t.Fatal("the failed message's reservations were not given back")
	}
}
