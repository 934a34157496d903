package relay

import (
	"fmt"
	"time"

	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/store"
)

// holdWindows are the windows a managed account is judged over (as GET
// /deliverability reports them).
var holdWindows = []struct {
	name string
	d    time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// CheckManagedHold holds teamID's managed account providerID when its
// mail's bounce or complaint rate over any window is at risk (SPEC §13):
// the account leaves rotation (status inactive, reason "held: …") until
// the operator releases it; the team cannot re-activate it. It is called
// whenever a bounce or complaint was recorded against mail that provider
// sent, so the rates it reads include that one. Another provider, or an
// account held already, is left alone.
//
// It also judges every provider (managed or not) on the same windows and
// sends provider.deliverability_warning when the worst level rises into
// warning or at risk (levels.go).
func (s *Scheduler) CheckManagedHold(teamID, providerID string) {
	p, err := s.store.TeamProvider(teamID, providerID)
	if err != nil {
		return
	}
	t := s.cfg.Deliverability
	if t == (deliverability.Thresholds{}) {
		t = deliverability.Defaults
	}
	now := s.now().UTC()
	var judged []windowRates
	for _, w := range holdWindows {
		delivered, hard, soft, complaints, err := s.store.FeedbackWindow(teamID, providerID, now.Add(-w.d))
		if err != nil {
			s.log.Error("reading deliverability counters failed", "team", teamID, "err", err)
			return
		}
		r := deliverability.Judge(deliverability.Counts{Delivered: delivered, Bounces: hard + soft, Complaints: complaints}, t)
		judged = append(judged, windowRates{window: w.name, recipients: delivered, Rates: r})
	}
	s.noteLevel(teamID, providerID, judged, now)
	if !p.Managed || p.Held != nil {
		return
	}
	for _, j := range judged {
		w, r, delivered := j, j.Rates, j.recipients
		if r.Level != deliverability.AtRisk {
			continue
		}
		reason := fmt.Sprintf("deliverability at risk over %s: bounce rate %.1f %%, complaint rate %.2f %% of %d recipients",
			w.window, 100*r.BounceRate, 100*r.ComplaintRate, delivered)
		held, _, err := s.store.HoldManaged(teamID, providerID, reason, now)
		if err != nil {
			s.log.Error("holding the managed account failed", "team", teamID, "provider", providerID, "err", err)
			return
		}
		if !held {
			return
		}
		s.log.Warn("managed account held", "event", "managed_account_held", "team", teamID, "provider", providerID,
			"window", w.window, "bounce_rate", r.BounceRate, "complaint_rate", r.ComplaintRate, "recipients", delivered)
		s.emitProvider(teamID, providerID, "inactive", "held: "+reason)
		if s.cfg.Events != nil {
			s.cfg.Events(event.Event{Type: event.ManagedAccountHeld, TeamID: teamID, ProviderID: providerID, Reason: reason, At: now,
				Extra: map[string]any{"window": w.window, "bounce_rate": r.BounceRate, "complaint_rate": r.ComplaintRate}})
		}
		return
	}
}

// feedbackProviders are the providers new feedback entries of after
// (compared with before) name: whose rates just moved.
func feedbackProviders(before, after *store.Message) []string {
	had := map[string]int{}
	for _, r := range before.Recipients {
		had[r.Address] = len(r.Feedback)
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range after.Recipients {
		for _, f := range r.Feedback[min(had[r.Address], len(r.Feedback)):] {
			if f.ProviderID != "" && !seen[f.ProviderID] {
				seen[f.ProviderID] = true
				out = append(out, f.ProviderID)
			}
		}
	}
	return out
}
