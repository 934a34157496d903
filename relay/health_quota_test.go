package relay

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestHealthReportsQuotaUse: Health carries each limited window's use as
// the pick counts it and the cap in force — for a range, this hour's draw
// — so the dashboard draws used / cap without a rule of its own.
func TestHealthReportsQuotaUse(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)}
	h := newHarnessClock(t, nil, nil, clock.now)
	h.updateProvider(func(p *store.Provider) {
		p.Quotas.PerMinute = &store.Range{Min: 3, Max: 3}
		p.Quotas.PerHour = &store.Range{Min: 10, Max: 20}
	})
	if got := h.sched.Health(h.provID).QuotaUse; got["per_minute"] != (provhealth.QuotaUse{Used: 0, Cap: 3}) {
		t.Fatalf("before any mail: %+v", got)
	}
	c := h.dial(h.secret)
	defer c.Close()
	for i := 0; i < 2; i++ {
		reply, err := send(c, "a@example.com", []string{"b@example.net"}, "Subject: q\r\n\r\nbody\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if m := h.waitMessage(queuedRe.FindStringSubmatch(reply)[1]); m.Status != state.MessageSent {
			t.Fatalf("message %s", m.Status)
		}
	}
	got := h.sched.Health(h.provID).QuotaUse
	hourCap := routing.Limit{Min: 10, Max: 20}.Effective(h.provID, clock.now())
	want := map[string]provhealth.QuotaUse{"per_minute": {Used: 2, Cap: 3}, "per_hour": {Used: 2, Cap: hourCap}}
	if len(got) != len(want) || got["per_minute"] != want["per_minute"] || got["per_hour"] != want["per_hour"] {
		t.Fatalf("quota use %+v, want %+v", got, want)
	}
}
