package relay

import (
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// The managed account's limits at acceptance (SPEC §2). When it is the
// only active provider in a credential's scope, each recipient is
// reserved before the 250, so concurrent sessions cannot overshoot:
//
//   - daily: the day's usage — recipients handed to the upstream (or in
//     flight) today plus recipients accepted today and still queued
//     (reserved) — may not pass the daily limit: past it a recipient is
//     refused (550 5.7.1 / 429 daily_limit_exceeded) instead of queueing
//     mail that cannot go today;
//   - hourly: one message may not have more recipients than the hourly
//     limit (452 4.5.3 / 422): it could never go out within one hour, the
//     managed account sending every recipient of a message at once.
//     Messages within it are accepted whatever the hour holds and wait in
//     the queue for an hour with room (the scheduler never hands more
//     than the hourly limit to the upstream in one UTC hour).
//
// A reservation belongs to the window (UTC hour, UTC day) it was made in:
// it counts as that window's reserved usage until its message's first
// attempt is claimed, which hands it over to the quota counter of the
// window the attempt runs in (as sent). So a message accepted in hour H
// that waits into H+1 counts in H as reserved and in H+1 as sent once
// it goes out; the same holds for days. ManagedUsage reports exactly these
// figures, so the API, the CLI and the limit-increase check see the
// usage acceptance enforces.

// managedOnly returns the team's managed provider when it is the only
// active provider in scope (nil otherwise: another provider can take
// it). A store error is returned: the limits of the team are unknown, so
// the caller answers "try again later" rather than guess.
func (srv *Server) managedOnly(c *Credential) (*store.Provider, *store.Team, error) {
	ps, err := srv.reg.TeamProviders(c.TeamID)
	if err != nil {
		return nil, nil, err
	}
	scope := routingScope(c.Scope)
	var managed *store.Provider
	for _, p := range ps {
		cand := candidate(p)
		if !routing.InScope(scope, cand) || cand.Status != state.ProviderActive || cand.Weight != nil && *cand.Weight <= 0 {
			continue
		}
		if !p.Managed {
			return nil, nil, nil
		}
		managed = p
	}
	if managed == nil {
		return nil, nil, nil
	}
	team, err := teamOf(srv.store, c.TeamID)
	if err != nil {
		return nil, nil, err
	}
	return managed, team, nil
}

// teamOf reads a team for its limit overrides. A team that does not exist
// (tests without teams) is nil: the defaults apply. Any other error is
// returned, never read as "no overrides": a failed read must not lift a
// team's lowered limits or drop its raised ones.
func teamOf(st *store.Store, teamID string) (*store.Team, error) {
	t, err := st.Team(teamID)
	if err == store.ErrNotFound {
		return nil, nil
	}
	return t, err
}

// managedVerdict is acceptManaged's answer.
type managedVerdict int

const (
	managedOK         managedVerdict = iota
	managedOverDaily                 // the day has no room for the recipients
	managedOverHourly                // the message has more recipients than an hour allows
)

// windowCount counts recipients reserved at acceptance in one window.
type windowCount struct {
	start time.Time
	n     int
}

// roll empties the count when now is in a later window than its start.
func (c *windowCount) roll(w routing.Window, now time.Time) {
	if s := routing.WindowStart(w, now); !c.start.Equal(s) {
		c.start, c.n = s, 0
	}
}

// current is the count if it belongs to now's window, else 0.
func (c *windowCount) current(w routing.Window, now time.Time) int {
	if c.start.Equal(routing.WindowStart(w, now)) {
		return c.n
	}
	return 0
}

// release gives back n reserved at `at`, if that window is still the
// counted one: a reservation of an earlier window was dropped when the
// window rolled, and giving it back would free room in the current one.
func (c *windowCount) release(w routing.Window, n int, at time.Time) {
	if routing.WindowStart(w, at).Equal(c.start) {
		c.n = max(0, c.n-n)
	}
}

// acceptManaged reserves n more recipients of a message that will then
// have msgRecipients, on the managed provider's current UTC hour and day,
// or says which limit refuses them.
func (h *health) acceptManaged(p *store.Provider, team *store.Team, n, msgRecipients int, now time.Time) managedVerdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.limits(p, team)
	if hl := l[routing.Hour]; hl != nil && msgRecipients > hl.Effective(p.ID, now) {
		return managedOverHourly
	}
	st := h.get(p.ID)
	st.usage.Roll(now)
	st.acceptedHour.roll(routing.Hour, now)
	st.acceptedDay.roll(routing.Day, now)
	if dl := l[routing.Day]; dl != nil && st.usage.Count[routing.Day]+st.acceptedDay.n+n > dl.Effective(p.ID, now) {
		return managedOverDaily
	}
	st.acceptedHour.n += n
	st.acceptedDay.n += n
	return managedOK
}

// releaseManaged returns acceptance reservations made at acceptedAt (a
// transaction that did not complete, or a message whose first attempt
// took them over).
func (h *health) releaseManaged(providerID string, n int, acceptedAt time.Time) {
	if n <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.get(providerID)
	st.acceptedHour.release(routing.Hour, n, acceptedAt)
	st.acceptedDay.release(routing.Day, n, acceptedAt)
}

// restoreManaged counts again, after a restart, the reservations of the
// queued messages accepted in the current hour and day
// (store.ManagedReservations), so that the limits at acceptance and the
// usage reported hold across restarts.
func (h *health) restoreManaged(rs []store.ManagedReservation, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rs {
		st := h.get(r.ProviderID)
		st.acceptedHour.roll(routing.Hour, now)
		st.acceptedDay.roll(routing.Day, now)
		if routing.WindowStart(routing.Hour, r.AcceptedAt).Equal(st.acceptedHour.start) {
			st.acceptedHour.n += r.Recipients
		}
		if routing.WindowStart(routing.Day, r.AcceptedAt).Equal(st.acceptedDay.start) {
			st.acceptedDay.n += r.Recipients
		}
	}
}

// ManagedUsage is a managed account's usage in the current UTC hour and
// day. Sent counts recipients handed to the upstream or in flight in the
// window (its quota counter); Reserved counts recipients accepted in the
// window and still queued. Usage against a limit is Sent + Reserved.
type ManagedUsage struct {
	HourSent, HourReserved int
	DaySent, DayReserved   int
}

// managedUsage reads provider id's ManagedUsage at now; ok is false when
// the relay has no state for it (nothing sent or accepted since the start
// and no persisted counter).
func (h *health) managedUsage(id string, now time.Time) (ManagedUsage, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.state[id]
	if !ok {
		return ManagedUsage{}, false
	}
	// Read without rolling: a reader must not reset what it reads.
	var u ManagedUsage
	if st.usage.Start[routing.Hour].Equal(routing.WindowStart(routing.Hour, now)) {
		u.HourSent = st.usage.Count[routing.Hour]
	}
	if st.usage.Start[routing.Day].Equal(routing.WindowStart(routing.Day, now)) {
		u.DaySent = st.usage.Count[routing.Day]
	}
	u.HourReserved = st.acceptedHour.current(routing.Hour, now)
	u.DayReserved = st.acceptedDay.current(routing.Day, now)
	return u, true
}

// tooLargeForManaged reports whether n recipients can never go through
// the managed account p in one window: more than its hourly or daily
// limit. routing.Usage lets an oversized request through an empty window
// so that it is not stuck; the managed account's limits count recipients
// and must never be exceeded (SPEC §2), so such a message waits for
// another provider or a raised limit instead.
func tooLargeForManaged(p *store.Provider, l routing.Limits, n int, now time.Time) bool {
	if !p.Managed {
		return false
	}
	for _, w := range []routing.Window{routing.Hour, routing.Day} {
		if l[w] != nil && n > l[w].Effective(p.ID, now) {
			return true
		}
	}
	return false
}
