package relay

import (
	"fmt"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/internal/event"
)

// windowRates is one window's judgement of a provider.
type windowRates struct {
	window     string
	recipients int64
	deliverability.Rates
}

// levelMemory remembers each provider's worst level when last judged.
// It lives in memory: after a restart the first judgement of a provider
// still over a threshold reports it once more, which a receiver sees as
// one repeated warning rather than a missed one.
type levelMemory struct {
	mu     sync.Mutex
	levels map[string]deliverability.Level
}

// swap stores lvl for providerID and returns the previous level
// (InsufficientVolume when none).
func (m *levelMemory) swap(providerID string, lvl deliverability.Level) deliverability.Level {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.levels == nil {
		m.levels = map[string]deliverability.Level{}
	}
	prev, ok := m.levels[providerID]
	if !ok {
		prev = deliverability.InsufficientVolume
	}
	m.levels[providerID] = lvl
	return prev
}

// noteLevel takes a provider's fresh judgement over the windows and
// sends provider.deliverability_warning when its worst level rose into
// warning or at risk: once per crossing, not once per bounce (a level
// that falls back and rises again is a new crossing).
func (s *Scheduler) noteLevel(teamID, providerID string, judged []windowRates, now time.Time) {
	worst := deliverability.InsufficientVolume
	var at windowRates
	for _, j := range judged {
		if deliverability.Worst(worst, j.Level) != worst {
			worst, at = j.Level, j
		}
	}
	prev := s.levels.swap(providerID, worst)
	if worst != deliverability.Warning && worst != deliverability.AtRisk {
		return
	}
	if deliverability.Worst(prev, worst) == prev {
		return // no higher than before: already reported
	}
	reason := fmt.Sprintf("deliverability %s over %s: bounce rate %.1f %%, complaint rate %.2f %% of %d recipients",
		worst, at.window, 100*at.BounceRate, 100*at.ComplaintRate, at.recipients)
	s.log.Warn("provider deliverability warning", "event", "deliverability_warning", "team", teamID, "provider", providerID,
		"level", string(worst), "window", at.window, "bounce_rate", at.BounceRate, "complaint_rate", at.ComplaintRate)
	if s.cfg.Events != nil {
		s.cfg.Events(event.Event{Type: event.DeliverabilityWarning, TeamID: teamID, ProviderID: providerID, Reason: reason, At: now,
			Extra: map[string]any{"level": string(worst), "window": at.window, "bounce_rate": at.BounceRate,
				"complaint_rate": at.ComplaintRate, "recipients": at.recipients}})
	}
}
