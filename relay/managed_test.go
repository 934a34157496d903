package relay

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestManagedReservationsAcrossDays: after a restart only today's queued
// reservations count again, and giving back one made on an earlier day
// (its message's first attempt after midnight) frees nothing of today's.
func TestManagedReservationsAcrossDays(t *testing.T) {
	h := newHealth(ManagedLimits{Hourly: 100, Daily: 3}, nil)
	p := &store.Provider{ID: "dprov_managed", Managed: true}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	yesterday := now.Add(-24 * time.Hour)
	h.restoreManaged([]store.ManagedReservation{
		{MessageID: "eml_today", ProviderID: p.ID, AcceptedAt: now.Add(-time.Hour), Recipients: 2},
		{MessageID: "eml_yesterday", ProviderID: p.ID, AcceptedAt: yesterday, Recipients: 5},
	}, now)
	if h.acceptManaged(p, nil, 1, 1, now) != managedOK {
		t.Fatal("the 3rd recipient of a limit of 3 (2 restored) was refused: yesterday's reservations were counted")
	}
	if h.acceptManaged(p, nil, 1, 1, now) == managedOK {
		t.Fatal("the 4th recipient was accepted: today's reservations were not restored")
	}
	h.releaseManaged(p.ID, 5, yesterday)
	if h.acceptManaged(p, nil, 1, 1, now) == managedOK {
		t.Fatal("giving back yesterday's reservations freed room in today's limit")
	}
	h.releaseManaged(p.ID, 1, now)
	if h.acceptManaged(p, nil, 1, 1, now) != managedOK {
		t.Fatal("giving back one of today's reservations did not free its room")
	}
}

// TestManagedReservationFreedWhenNoProviderFailsMessage: a message that
// fails without an attempt (no provider left for it, retries exhausted)
// gives its acceptance reservations back.
func TestManagedReservationFreedWhenNoProviderFailsMessage(t *testing.T) {
	h := newHarness(t, nil)
	p := &store.Provider{ID: "dprov_managed", Managed: true}
	sched := h.sched
	sched.health.mu.Lock()
	sched.health.managed = ManagedLimits{Hourly: 100, Daily: 2}
	sched.health.mu.Unlock()
	now := time.Now().UTC()
	if sched.health.acceptManaged(p, nil, 2, 2, now) != managedOK {
		t.Fatal("two recipients of a limit of 2 refused")
	}
	m := &store.Message{ID: store.NewID(store.PrefixMessage), TeamID: h.team, From: "a@example.com", Status: state.MessagePending,
		Recipients:      []store.Recipient{{Address: "b@example.com", Status: state.MessagePending}, {Address: "c@example.com", Status: state.MessagePending}},
		ManagedReserved: 2, ManagedProviderID: p.ID, ManagedReservedAt: now,
		Retries: len(sched.cfg.RetrySchedule), CreatedAt: now, NextAttemptAt: now.Add(time.Hour)}
	if err := h.store.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	sched.noProvider(m, routing.Decision{}, nil, 0)
	if got, _ := h.store.Message(m.ID); got.State != store.StateDone || got.ManagedReserved != 0 {
		t.Fatalf("message after no provider: state %s, reserved %d", got.State, got.ManagedReserved)
	}
	if sched.health.acceptManaged(p, nil, 2, 2, now) != managedOK {
		t.Fatal("the failed message's reservations were not given back")
	}
}

// TestManagedHourlyLimitAtAcceptance: a message may have at most the
// hourly limit's recipients (the next one is refused as over the hour,
// not the day); messages within it are accepted whatever the hour holds
// already, and wait.
func TestManagedHourlyLimitAtAcceptance(t *testing.T) {
	h := newHealth(ManagedLimits{Hourly: 2, Daily: 50}, nil)
	p := &store.Provider{ID: "dprov_managed", Managed: true}
	now := time.Date(2026, 11, 27, 12, 30, 0, 0, time.UTC)
	for i, want := range []managedVerdict{managedOK, managedOK, managedOverHourly} {
		if got := h.acceptManaged(p, nil, 1, i+1, now); got != want {
			t.Fatalf("recipient %d of one message, hourly limit 2: verdict %d, want %d", i+1, got, want)
		}
	}
	// Two more 2-recipient messages in the same hour: accepted, they wait.
	for i := 0; i < 2; i++ {
		if got := h.acceptManaged(p, nil, 2, 2, now); got != managedOK {
			t.Fatalf("2-recipient message %d: verdict %d", i, got)
		}
	}
	// A team's raised hourly limit lets a larger message in.
	hourly := 5
	if got := h.acceptManaged(p, &store.Team{ManagedHourlyLimit: &hourly}, 3, 3, now); got != managedOK {
		t.Fatalf("3 recipients under a team hourly limit of 5: verdict %d", got)
	}
	u, _ := h.managedUsage(p.ID, now)
	if u != (ManagedUsage{HourReserved: 9, DayReserved: 9}) {
		t.Fatalf("usage %+v, want 9 reserved in the hour and the day", u)
	}
}

// TestManagedUsageAcrossTheHour: a reservation counts in the hour (and
// day) it was made in; a message accepted in hour H that waits into H+1
// counts in H+1 only once its attempt is claimed, as sent — and giving
// its reservation back then frees nothing of H+1.
func TestManagedUsageAcrossTheHour(t *testing.T) {
	h := newHealth(ManagedLimits{Hourly: 2, Daily: 4}, nil)
	p := &store.Provider{ID: "dprov_managed", Managed: true}
	hourH := time.Date(2026, 11, 27, 12, 59, 0, 0, time.UTC)
	for i := 0; i < 2; i++ {
		if got := h.acceptManaged(p, nil, 2, 2, hourH); got != managedOK {
			t.Fatalf("message %d: verdict %d", i, got)
		}
	}
	if u, _ := h.managedUsage(p.ID, hourH); u != (ManagedUsage{HourReserved: 4, DayReserved: 4}) {
		t.Fatalf("in hour H: %+v", u)
	}
	if got := h.acceptManaged(p, nil, 1, 1, hourH); got != managedOverDaily {
		t.Fatalf("5th recipient of a daily limit of 4: verdict %d", got)
	}
	next := hourH.Add(2 * time.Minute) // 13:01, hour H+1
	if u, _ := h.managedUsage(p.ID, next); u != (ManagedUsage{DayReserved: 4}) {
		t.Fatalf("in hour H+1 before any attempt: %+v, want only the day's 4 reserved", u)
	}
	// One message's attempt is claimed in H+1: the quota counter takes
	// its 2 recipients, then the acceptance reservation is given back.
	m := &store.Message{Recipients: []store.Recipient{{Status: state.MessagePending}, {Status: state.MessagePending}}}
	ex, res := h.pick(m, []*store.Provider{{ID: p.ID, Managed: true, Status: state.ProviderActive}}, nil, next, func(int) int { return 0 })
	if res == nil {
		t.Fatalf("no pick in an empty hour: %+v", ex)
	}
	h.releaseManaged(p.ID, 2, hourH)
	if u, _ := h.managedUsage(p.ID, next); u != (ManagedUsage{HourSent: 2, DaySent: 2, DayReserved: 2}) {
		t.Fatalf("in hour H+1 after one claim: %+v", u)
	}
	// The hour is full: the other message waits for H+2.
	if _, res := h.pick(m, []*store.Provider{{ID: p.ID, Managed: true, Status: state.ProviderActive}}, nil, next, func(int) int { return 0 }); res != nil {
		t.Fatal("a second 2-recipient message was picked in an hour with a limit of 2")
	}
}

// TestManagedNeverExceedsHourlyLimit: a message with more recipients than
// the managed account's hourly limit (accepted while another provider
// was in scope, or before the limit was lowered) is not handed to it even
// in an empty hour; other providers are not held to that.
func TestManagedNeverExceedsHourlyLimit(t *testing.T) {
	h := newHealth(ManagedLimits{Hourly: 2, Daily: 50}, nil)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m := &store.Message{Recipients: []store.Recipient{{Status: state.MessagePending}, {Status: state.MessagePending}, {Status: state.MessagePending}}}
	managed := &store.Provider{ID: "dprov_managed", Managed: true, Status: state.ProviderActive}
	ex, res := h.pick(m, []*store.Provider{managed}, nil, now, func(int) int { return 0 })
	if res != nil {
		t.Fatal("a 3-recipient message went to a managed account allowing 2 an hour")
	}
	if !ex.Waiting || !ex.RetryAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("explanation %+v: want waiting until the next hour", ex)
	}
	own := &store.Provider{ID: "dprov_own", Status: state.ProviderActive, Quotas: store.Quotas{PerHour: &store.Range{Min: 2, Max: 2}}}
	if _, res := h.pick(m, []*store.Provider{own}, nil, now, func(int) int { return 0 }); res == nil {
		t.Fatal("an own provider with an hourly quota of 2 messages refused one 3-recipient message")
	}
}
