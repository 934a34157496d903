package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/routing"
)

// TestDeliverabilityWarningOncePerCrossing: a provider's bounce rate
// rising into warning sends provider.deliverability_warning once (not
// per further bounce), rising on into at risk sends it once more, and
// judging the same level again sends nothing. It applies to a team's own
// provider, which is never held.
func TestDeliverabilityWarningOncePerCrossing(t *testing.T) {
	events := make(chan event.Event, 100)
	h := newHarnessSched(t, nil, func(c *SchedulerConfig) {
		c.Deliverability = deliverability.Thresholds{BounceWarning: 0.1, BounceAtRisk: 0.5, ComplaintWarning: 0.001,
			ComplaintAtRisk: 0.005, MinVolume: 5}
		c.Events = func(e event.Event) {
			if e.Type == event.DeliverabilityWarning {
				events <- e
			}
		}
	})
	h.fake.answer = func(_ int, env Envelope) (*Result, error) {
		if strings.HasPrefix(env.To[0], "bad") {
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
	next := func(want deliverability.Level) {
		t.Helper()
		select {
		case e := <-events:
			if e.Extra["level"] != string(want) || e.ProviderID != h.provID || e.TeamID != h.team || e.Reason == "" {
				t.Fatalf("event %+v, want level %s", e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no provider.deliverability_warning (%s)", want)
		}
	}
	for i := range 8 {
		sendWait(fmt.Sprintf("ok%d@example.net", i))
	}
	sendWait("bad1@example.net") // 1 of 9: 11 %, warning
	next(deliverability.Warning)
	for i := 2; i <= 9; i++ { // up to 9 of 17: 53 %, at risk
		sendWait(fmt.Sprintf("bad%d@example.net", i))
	}
	next(deliverability.AtRisk)
	for range 3 { // the same level judged again: nothing
		h.sched.CheckManagedHold(h.team, h.provID)
	}
	select {
	case e := <-events:
		t.Fatalf("a warning per bounce, not per crossing: %+v", e)
	default:
	}
}
