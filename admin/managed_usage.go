package admin

// The managed account's usage, one definition for GET /providers/limits,
// the CLI (which prints that answer) and the limit-increase check
// (SPEC §2): in a UTC window (hour or day), usage is the recipients that
// count against its limit = sent (handed to the upstream, or in flight)
// in the window + reserved (accepted in the window and still queued). It
// is what the relay enforces at acceptance: a day whose usage reached the
// daily limit refuses the next recipient. The relay's live counters
// provide it (Options.Managed.Usage).

import (
	"errors"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// ManagedCounts is a managed account's usage as the relay counts it:
// Sent is recipients handed to the upstream or in flight in the current
// UTC hour / day, Reserved recipients accepted in that hour / day whose
// message still waits in the queue. A message accepted in one window
// that waits into the next counts there once it goes out, as sent.
type ManagedCounts struct {
	HourSent, HourReserved int
	DaySent, DayReserved   int
}

// managedSESLimit is the shared_amazon_ses snapshot of GET /providers/limits.
type managedSESLimit struct {
	ProviderID *string `json:"provider_id"`
	limitState
	// Reserved is the part of usage accepted today and still queued: it
	// counts against the limit before it is sent (usage − reserved was
	// handed to the upstream).
	Reserved int `json:"reserved"`
	// DailyLimit and SentToday repeat max_allowed and usage under the
	// hosted API's names for this snapshot (sent_today includes reserved,
	// so daily_limit − sent_today stays what the day has left).
	DailyLimit int    `json:"daily_limit"`
	SentToday  int    `json:"sent_today"`
	ResetsAt   string `json:"resets_at"` // next 00:00 UTC
	// Hourly is the hourly limit, counted the same way within the UTC hour.
	Hourly hourlyLimit `json:"hourly"`
}

// hourlyLimit is the managed account's hourly limit in the snapshot. At
// acceptance it refuses only a message with more recipients than Limit
// (it could never go out); mail within it waits for an hour with room,
// so is_at_limit means "what is accepted now waits", not "refused".
type hourlyLimit struct {
	Limit     int    `json:"limit"`
	Usage     int    `json:"usage"`
	Reserved  int    `json:"reserved"`
	IsAtLimit bool   `json:"is_at_limit"`
	ResetsAt  string `json:"resets_at"` // next full UTC hour
}

// managedSESSnapshot builds the shared_amazon_ses snapshot of the team
// whose managed account is managed (nil: none, nothing used); peers is
// the other nodes' part of its usage (cluster mode, managed_peers.go).
func (s *Server) managedSESSnapshot(teamID string, managed *store.Provider, pending *string, peers ManagedCounts) (managedSESLimit, error) {
	hourly, daily, err := s.managedLimits(teamID)
	if err != nil {
		return managedSESLimit{}, err
	}
	now := s.now()
	var u ManagedCounts
	snap := managedSESLimit{}
	if managed != nil {
		snap.ProviderID = &managed.ID
		if u, err = s.managedCounts(teamID, managed, now); err != nil {
			return managedSESLimit{}, err
		}
		u.add(peers)
	}
	used := u.DaySent + u.DayReserved
	snap.limitState = newLimitState(used, daily, pending)
	snap.Reserved, snap.DailyLimit, snap.SentToday = u.DayReserved, daily, used
	snap.ResetsAt = rfc3339(dayStart(now).Add(24 * time.Hour))
	hourUsed := u.HourSent + u.HourReserved
	snap.Hourly = hourlyLimit{Limit: hourly, Usage: hourUsed, Reserved: u.HourReserved, IsAtLimit: hourUsed >= hourly,
		ResetsAt: rfc3339(now.UTC().Truncate(time.Hour).Add(time.Hour))}
	return snap, nil
}

// managedLimits is the team's managed-account hourly and daily limits:
// its overrides or the operator defaults.
func (s *Server) managedLimits(teamID string) (hourly, daily int, err error) {
	t, err := s.st.Team(teamID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, 0, err
	}
	hourly, daily = s.opts.Managed.HourlyLimit, s.opts.Managed.DailyLimit
	if t != nil && t.ManagedHourlyLimit != nil {
		hourly = *t.ManagedHourlyLimit
	}
	if t != nil && t.ManagedDailyLimit != nil {
		daily = *t.ManagedDailyLimit
	}
	return hourly, daily, nil
}

// managedDailyLimit is the team's managed-account daily limit.
func (s *Server) managedDailyLimit(teamID string) (int, error) {
	_, daily, err := s.managedLimits(teamID)
	return daily, err
}

// managedUsage is today's usage of the managed account (sent + reserved),
// the figure the limit-increase check compares with the daily limit.
func (s *Server) managedUsage(teamID string, p *store.Provider, now time.Time) (int, error) {
	u, err := s.managedCounts(teamID, p, now)
	return u.DaySent + u.DayReserved, err
}

// managedCounts is the relay's live count when wired in, else today's
// recipients sent through p from the message log, counted exactly as
// GET /providers/usage does (the same 7-day window: mail held back by a
// full daily limit can wait in the queue for days before it is sent).
// The log knows nothing of the hour or of queued mail: zero there.
func (s *Server) managedCounts(teamID string, p *store.Provider, now time.Time) (ManagedCounts, error) {
	if s.opts.Managed.Usage != nil {
		if u, ok := s.opts.Managed.Usage(p.ID); ok {
			return u, nil
		}
	}
	items, err := s.countUsage(teamID, []*store.Provider{p}, now.Add(-usageWindow), dayStart(now))
	if err != nil {
		return ManagedCounts{}, err
	}
	return ManagedCounts{DaySent: items[0].SentToday}, nil
}
