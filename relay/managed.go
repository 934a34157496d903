package relay

import (
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// The managed account's daily limit is enforced at acceptance (SPEC §2):
// when it is the only active provider in a credential's scope, each
// recipient reserves a unit of its UTC day before the 250, so concurrent
// sessions cannot overshoot, and an exhausted account refuses the
// recipient instead of queueing mail it cannot send today. A reservation
// moves onto the message and is handed over to the quota counter when the
// message's first attempt is claimed.

// managedOnly returns the team's managed provider when it is the only
// active provider in scope (nil otherwise: another provider can take it).
func (srv *Server) managedOnly(c *Credential) (*store.Provider, *store.Team) {
	ps, err := srv.reg.TeamProviders(c.TeamID)
	if err != nil {
		return nil, nil
	}
	scope := routingScope(c.Scope)
	var managed *store.Provider
	for i, cand := range candidates(ps, nil) {
		if !routing.InScope(scope, cand) || cand.Status != store.StatusActive || cand.Weight != nil && *cand.Weight <= 0 {
			continue
		}
		if !ps[i].IsShared {
			return nil, nil
		}
		managed = ps[i]
	}
	if managed == nil {
		return nil, nil
	}
	team, _ := srv.store.Team(c.TeamID)
	return managed, team
}

// acceptManaged reserves n recipients of the managed provider's current
// UTC day, or reports that the daily limit has no room for them.
func (h *health) acceptManaged(p *store.Provider, team *store.Team, n int, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.limits(p, team)[routing.Day]
	if l == nil {
		return true
	}
	st := h.get(p.ID)
	st.usage.Roll(now)
	if day := routing.WindowStart(routing.Day, now); !st.acceptedDay.Equal(day) {
		st.acceptedDay, st.accepted = day, 0
	}
	if st.usage.Count[routing.Day]+st.accepted+n > l.Effective(p.ID, now) {
		return false
	}
	st.accepted += n
	return true
}

// releaseManaged returns acceptance reservations made at acceptedAt (a
// transaction that did not complete, or a message whose first attempt
// took them over). Reservations of an earlier day were dropped when the
// day rolled: giving them back would free room in today's.
func (h *health) releaseManaged(providerID string, n int, acceptedAt time.Time) {
	if n <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.get(providerID)
	if !routing.WindowStart(routing.Day, acceptedAt).Equal(st.acceptedDay) {
		return
	}
	st.accepted = max(0, st.accepted-n)
}

// restoreManaged counts again, after a restart, the reservations of the
// queued messages accepted today (store.ManagedReservations), so that the
// daily limit at acceptance holds across restarts.
func (h *health) restoreManaged(rs []store.ManagedReservation, now time.Time) {
	day := routing.WindowStart(routing.Day, now)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rs {
		if !routing.WindowStart(routing.Day, r.AcceptedAt).Equal(day) {
			continue
		}
		st := h.get(r.ProviderID)
		if !st.acceptedDay.Equal(day) {
			st.acceptedDay, st.accepted = day, 0
		}
		st.accepted += r.Recipients
	}
}
