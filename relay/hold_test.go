package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestManagedAccountHeldAtRisk: once the managed account's bounce rate
// over a window with enough volume is at risk, the account is held (out
// of rotation, reason given, team.managed_account_held emitted) and new
// mail finds no active provider; under the minimum volume nothing is
// held; the operator's release brings it back. A team's own provider
// with the same rates is never held.
func TestManagedAccountHeldAtRisk(t *testing.T) {
	events := make(chan event.Event, 100)
	h := newHarnessSched(t, nil, func(c *SchedulerConfig) {
		c.Managed = ManagedLimits{Hourly: 1000, Daily: 1000}
		c.Deliverability = deliverability.Thresholds{BounceWarning: 0.05, BounceAtRisk: 0.10, ComplaintWarning: 0.001,
			ComplaintAtRisk: 0.005, MinVolume: 5}
		c.Events = func(e event.Event) { events <- e }
	})
	h.updateProvider(func(p *store.Provider) { p.Managed = true })
	h.fake.answer = func(_ int, env Envelope) (*Result, error) {
		if env.To[0] == "bad@example.net" {
			return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseRcpt, Code: 550, Enhanced: "5.1.1", Text: "no such user"}}
		}
		return &Result{Reply: "250 ok"}, nil
	}
	c := h.dial(h.secret)
	defer c.Close()
	sendWait := func(rcpt string) {
		t.Helper()
		text, err := send(c, "s@example.com", []string{rcpt}, "Subject: x\r\n\r\nx\r\n")
		if err != nil {
			t.Fatal(err)
		}
		h.waitMessage(queuedRe.FindStringSubmatch(text)[1])
	}
	// A bounce among too few recipients holds nothing.
	sendWait("bad@example.net")
	if p, _ := h.store.Provider(h.provID); p.Held != nil || p.Status != state.ProviderActive {
		t.Fatalf("held under the minimum volume: %+v", p)
	}
	for i := range 3 {
		sendWait(fmt.Sprintf("ok%d@example.net", i))
	}
	// 4 recipients, 1 bounce; the 5th (a bounce) makes 2 of 5: at risk.
	if err := h.store.DeleteSuppression(h.team, "bad@example.net"); err != nil {
		t.Fatal(err)
	}
	sendWait("bad@example.net")
	deadline := time.After(5 * time.Second)
	for held := false; !held; {
		select {
		case e := <-events:
			held = e.Type == event.ManagedAccountHeld && e.TeamID == h.team && e.ProviderID == h.provID && e.Reason != ""
		case <-deadline:
			t.Fatal("no team.managed_account_held event")
		}
	}
	// The hold is written before its event.
	p, _ := h.store.Provider(h.provID)
	if p.Held == nil || p.Status != state.ProviderInactive {
		t.Fatalf("not held: %+v", p)
	}
	if _, err := send(c, "s@example.com", []string{"ok9@example.net"}, "Subject: x\r\n\r\nx\r\n"); smtpCode(err) != 451 {
		t.Fatalf("send through a held account: %v, want 451 no_active_providers", err)
	}
	c.Reset()
	if _, err := h.store.ReleaseManaged(h.team, time.Now()); err != nil {
		t.Fatal(err)
	}
	h.sched.Wake(h.team)
	if p, _ := h.store.Provider(h.provID); p.Held != nil || p.Status != state.ProviderActive {
		t.Fatalf("after release: %+v", p)
	}
	sendWait("ok8@example.net")
}

// TestOwnProviderNeverHeld: the hold is for the managed account only.
func TestOwnProviderNeverHeld(t *testing.T) {
	h := newHarnessSched(t, nil, func(c *SchedulerConfig) {
		c.Deliverability = deliverability.Thresholds{BounceWarning: 0.05, BounceAtRisk: 0.10, ComplaintWarning: 0.001,
			ComplaintAtRisk: 0.005, MinVolume: 1}
	})
	h.fake.answer = func(int, Envelope) (*Result, error) {
		return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseRcpt, Code: 550, Enhanced: "5.1.1", Text: "no such user"}}
	}
	c := h.dial(h.secret)
	defer c.Close()
	text, err := send(c, "s@example.com", []string{"bad@example.net"}, "Subject: x\r\n\r\nx\r\n")
	if err != nil {
		t.Fatal(err)
	}
	m := h.waitMessage(queuedRe.FindStringSubmatch(text)[1])
	if len(m.Recipients[0].Feedback) != 1 {
		t.Fatalf("no bounce recorded: %+v", m.Recipients[0])
	}
	if p, _ := h.store.Provider(h.provID); p.Held != nil || p.Status != state.ProviderActive {
		t.Fatalf("own provider held: %+v", p)
	}
}
