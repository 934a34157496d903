package relay

import (
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// ManagedLimits are the operator's defaults for managed accounts.
type ManagedLimits struct {
	Hourly, Daily int
}

// health holds every provider's live quota usage and breaker state. One
// mutex covers the pick and the reservation, so two attempts can never
// both take the last unit of a window.
type health struct {
	mu      sync.Mutex
	managed ManagedLimits
	state   map[string]*provState
	// scratch is pickSet's candidate buffer, reused under mu.
	scratch []routing.Candidate
	// gate is the cluster's quota (nil in single-node mode).
	gate QuotaGate
	// breakers keeps breaker state beyond the process (nil: memory only).
	breakers BreakerStore
	// persistMu orders store writes with adopting their results, so a
	// slow write cannot put back an older state over a newer one. Picks
	// do not take it.
	persistMu sync.Mutex
}

type provState struct {
	usage   routing.Usage
	breaker routing.Breaker
	// acceptedHour and acceptedDay count managed-account recipients
	// reserved at acceptance in the current UTC hour and day whose
	// messages have not been attempted yet (managed.go).
	acceptedHour, acceptedDay windowCount
	// probing is set while the one attempt a half-open breaker lets
	// through is under way (routing.Breaker.HalfOpen).
	probing bool
	// recovered is when an operator's connection test last succeeded:
	// a message that failed here before then need not avoid it any more.
	recovered time.Time
}

func newHealth(managed ManagedLimits, gate QuotaGate) *health {
	return &health{managed: managed, state: map[string]*provState{}, gate: gate}
}

// load seeds the hour and day counters from the store after a restart.
func (h *health) load(recs map[string]store.UsageRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, r := range recs {
		st := h.get(id)
		st.usage.Start[routing.Hour], st.usage.Count[routing.Hour] = r.HourStart, r.Hour
		st.usage.Start[routing.Day], st.usage.Count[routing.Day] = r.DayStart, r.Day
	}
}

func (h *health) get(id string) *provState {
	st, ok := h.state[id]
	if !ok {
		st = &provState{}
		h.state[id] = st
	}
	return st
}

// limits converts a provider's quotas to routing's form. The managed
// account's limits are the team's override or the operator default.
func (h *health) limits(p *store.Provider, team *store.Team) routing.Limits {
	var l routing.Limits
	conv := func(r *store.Range) *routing.Limit {
		if r == nil {
			return nil
		}
		return &routing.Limit{Min: r.Min, Max: r.Max}
	}
	if p.Managed {
		hourly, daily := h.managed.Hourly, h.managed.Daily
		if team != nil && team.ManagedHourlyLimit != nil {
			hourly = *team.ManagedHourlyLimit
		}
		if team != nil && team.ManagedDailyLimit != nil {
			daily = *team.ManagedDailyLimit
		}
		if hourly > 0 {
			l[routing.Hour] = &routing.Limit{Min: hourly, Max: hourly}
		}
		if daily > 0 {
			l[routing.Day] = &routing.Limit{Min: daily, Max: daily}
		}
		return l
	}
	l[routing.Second] = conv(p.Quotas.PerSecond)
	l[routing.Minute] = conv(p.Quotas.PerMinute)
	l[routing.Hour] = conv(p.Quotas.PerHour)
	l[routing.Day] = conv(p.Quotas.PerDay)
	return l
}

// units is what one attempt of m costs on p: the managed account counts
// accepted recipients (SPEC §2), other providers count messages.
func units(p *store.Provider, m *store.Message) int {
	if p.Managed {
		return max(1, m.PendingCount())
	}
	return 1
}

// reservation is capacity taken at pick time.
type reservation struct {
	providerID string
	n          int
	at         time.Time
	record     store.UsageRecord
	probe      bool // the attempt a half-open breaker let through
	gated      bool // the cluster's QuotaGate took it too
	// limits are the provider's limits at the pick, for complete to tell
	// whether a give back opens a full window.
	limits routing.Limits
}

// pick chooses a provider for m among ps and reserves its capacity,
// atomically; it builds the route set on the spot (tests, one-offs).
func (h *health) pick(m *store.Message, ps []*store.Provider, team *store.Team, now time.Time, draw func(int) int) (routing.Explanation, *reservation) {
	rs := newRouteSet(m.Scope, ps)
	d, res := h.pickSet(m, rs, team, now, draw)
	return routing.Expand(m.Scope.Type, rs.set, d), res
}

// pickSet chooses a provider for m in its route set and reserves its
// capacity, atomically. The candidates are copied into a scratch slice
// the health lock guards, so a pick allocates nothing per provider.
func (h *health) pickSet(m *store.Message, rs *routeSet, team *store.Team, now time.Time, draw func(int) int) (routing.Decision, *reservation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cands := append(h.scratch[:0], rs.cands...)
	h.scratch = cands[:0]
	if rs.states == nil {
		// States are never removed from h.state, so the set may keep
		// them (it is rebuilt with the team's provider list).
		rs.states = make([]*provState, len(rs.provs))
		for i, p := range rs.provs {
			rs.states[i] = h.get(p.ID)
		}
	}
	for i := range cands {
		p, st := rs.provs[i], rs.states[i]
		if at, ok := m.AuthFailed[p.ID]; ok && !p.ActivatedAt.After(at) {
			cands[i].AuthFailed = true
		}
		if st.breaker.Pulled(now) {
			cands[i].Pulled, cands[i].NotBefore = true, st.breaker.PulledUntil
		} else if st.probing && st.breaker.HalfOpen(now) {
			// Its probe decides; the probe's success wakes the team.
			cands[i].Pulled = true
		}
		l, n := rs.limits[i], units(p, m)
		if p.Managed {
			l = h.limits(p, team)
		}
		if ok, retry := st.usage.Check(p.ID, l, n, now); !ok {
			cands[i].OverQuota, cands[i].NotBefore = true, retry
		} else if tooLargeForManaged(p, l, n, now) {
			// It waits for a raised limit (a decision wakes the team) or
			// for another provider; looking again each hour is cheap.
			cands[i].OverQuota, cands[i].NotBefore = true, routing.WindowStart(routing.Hour, now).Add(time.Hour)
		} else if h.gate != nil {
			if ok, retry := h.gate.Check(p.ID, l, n, now); !ok {
				cands[i].OverQuota, cands[i].NotBefore = true, retry
			}
		}
		if until, ok := m.Avoid[p.ID]; ok && now.Before(until) && !st.recovered.After(lastFailure(m, p.ID)) {
			cands[i].Avoid = true
		}
	}
	d := routing.Choose(cands, draw)
	for try := 0; h.gate != nil && d.Index >= 0 && try < len(cands); try++ {
		// The gate's Take can still say no after its Check said yes (a
		// hand back to the cluster in between): that provider is over
		// quota for this pick, and routing draws again.
		p := rs.provs[d.Index]
		l := rs.limits[d.Index]
		if p.Managed {
			l = h.limits(p, team)
		}
		if h.gate.Take(p.ID, l, units(p, m), now) {
			break
		}
		cands[d.Index].OverQuota, cands[d.Index].NotBefore = true, now.Add(50*time.Millisecond)
		d = routing.Choose(cands, draw)
	}
	if d.Index < 0 {
		return d, nil
	}
	p, st := rs.provs[d.Index], rs.states[d.Index]
	n := units(p, m)
	st.usage.Reserve(n, now)
	probe := st.breaker.HalfOpen(now)
	st.probing = st.probing || probe
	u := st.usage
	l := rs.limits[d.Index]
	if p.Managed {
		l = h.limits(p, team)
	}
	return d, &reservation{providerID: p.ID, n: n, at: now, probe: probe, gated: h.gate != nil, limits: l, record: store.UsageRecord{
		HourStart: u.Start[routing.Hour], Hour: u.Count[routing.Hour],
		DayStart: u.Start[routing.Day], Day: u.Count[routing.Day]}}
}

// lastFailure is when m's latest attempt on provider id ended (zero if it
// has none).
func lastFailure(m *store.Message, id string) time.Time {
	for i := len(m.Attempts) - 1; i >= 0; i-- {
		if a := &m.Attempts[i]; a.ProviderID == id {
			return a.StartedAt.Add(time.Duration(a.DurationMS) * time.Millisecond)
		}
	}
	return time.Time{}
}

// recover notes a successful connection test of provider id at now: the
// breaker lets it back in at once, and messages it failed before now may
// use it again.
func (h *health) recover(id string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.get(id)
	had := st.breaker.Reason != "" || len(st.breaker.Failures) > 0
	st.breaker.Reset()
	st.recovered = now
	if h.breakers != nil && had {
		// Written under the lock: rare (an operator's test), and a pick
		// must not see the old state come back from the store after it.
		h.breakers.UpdateBreaker(id, func(b *routing.Breaker) { b.Reset() })
	}
}

// usable reports whether any of the team's providers could take one
// message now, ignoring scopes and per-message exclusions: active, weight
// above zero, not pulled, headroom in every quota window. The scheduler
// asks it before waking a team's waiting messages, so a change that
// leaves nothing usable moves none of them.
func (h *health) usable(ps []*store.Provider, team *store.Team, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range ps {
		if p.Status != state.ProviderActive || p.Percentage != nil && *p.Percentage <= 0 {
			continue
		}
		st := h.get(p.ID)
		if st.breaker.Pulled(now) {
			continue
		}
		l := h.limits(p, team)
		if ok, _ := st.usage.Check(p.ID, l, 1, now); ok && (h.gate == nil || gateRoom(h.gate, p.ID, l, now)) {
			return true
		}
	}
	return false
}

// complete ends a reservation; consumed reports whether the upstream got
// the message (a failure before the body went out returns the capacity).
// It says whom to wake of the provider's team: messages may have parked
// behind what just ended, with nothing else to wake them early.
func (h *health) complete(r *reservation, consumed bool, now time.Time) wakeNeed {
	if r == nil {
		return wakeNeed{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.gated {
		h.gate.Done(r.providerID, r.limits, r.n, r.at, consumed, now)
	}
	st := h.get(r.providerID)
	// Only the minute, hour and day windows: a message held by the
	// per-second one is due within a second anyway.
	l := r.limits
	l[routing.Second] = nil
	full := false
	if !consumed {
		room, _ := st.usage.Check(r.providerID, l, 1, now)
		full = !room
	}
	st.usage.Complete(r.n, r.at, consumed, now)
	var need wakeNeed
	if full {
		// Only a window that was full and now has room wakes: a give
		// back into a window with room helps no one that waits.
		if room, _ := st.usage.Check(r.providerID, l, 1, now); room {
			need.some = r.n
		}
	}
	if r.probe {
		// Messages held behind a half-open probe park with no due time
		// of their own: only its end decides, whatever the end was.
		st.probing = false
		need.all = true
	}
	return need
}

// wakeNeed is whom complete asks to wake: the whole team (all), or at
// most some of its waiting messages (the units handed back: waking the
// whole queue for one unit would cost a write per waiting message at
// every such failure).
type wakeNeed struct {
	all  bool
	some int
}

// wakeFor wakes the team as complete asked.
func (s *Scheduler) wakeFor(teamID string, need wakeNeed) {
	switch {
	case need.all:
		s.Wake(teamID)
	case need.some > 0:
		s.wakeUpTo(teamID, need.some)
	}
}

// outcome feeds an attempt's result to the provider's breaker and reports
// whether it pulled the provider, or brought it back from half-open.
func (h *health) outcome(providerID string, ok bool, class routing.Class, now time.Time) (pulled, recovered bool, err error) {
	h.mu.Lock()
	st := h.get(providerID)
	before := st.breaker
	before.Failures = append([]time.Time(nil), before.Failures...) // Record reuses the array
	// Only a change of state is written: a failure that feeds the
	// breaker, or a success that clears failures or a half-open state.
	// The common case, a success with nothing to clear, writes nothing.
	changed := !ok && class.FeedsBreaker() || ok && (len(before.Failures) > 0 || before.Reason != "")
	if ok {
		recovered = st.breaker.Success(now)
	} else {
		pulled = st.breaker.Record(class, now)
	}
	h.mu.Unlock()
	if !changed || h.breakers == nil {
		return pulled, recovered, nil
	}
	if p, r, err := h.persistOutcome(providerID, ok, class, now, before); err == nil {
		return p, r, nil
	} else {
		return pulled, recovered, err
	}
}

// Health returns a provider's breaker state for the API, with the use of
// each limited quota window (the same counters the pick consults).
func (s *Scheduler) Health(providerID string) provhealth.Snapshot {
	now := s.now()
	snap := s.health.snapshot(providerID, now)
	if p, err := s.store.Provider(providerID); err == nil {
		if t, err := teamOf(s.store, p.TeamID); err == nil {
			snap.QuotaUse = s.health.quotaUse(p, t, now)
		}
	}
	return snap
}

// quotaUse is each limited window's use and cap at now; nil when the
// provider has no limit.
func (h *health) quotaUse(p *store.Provider, team *store.Team, now time.Time) map[string]provhealth.QuotaUse {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.get(p.ID)
	st.usage.Roll(now)
	var out map[string]provhealth.QuotaUse
	for w, l := range h.limits(p, team) {
		if l == nil {
			continue
		}
		used := st.usage.Count[w]
		if routing.Window(w) == routing.Second {
			used = st.usage.InSecond()
		}
		if out == nil {
			out = map[string]provhealth.QuotaUse{}
		}
		out[routing.Window(w).String()] = provhealth.QuotaUse{Used: used, Cap: l.Effective(p.ID, now)}
	}
	return out
}

func (h *health) snapshot(id string, now time.Time) provhealth.Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.get(id).breaker
	s := provhealth.Snapshot{State: b.State(now), RecentFailures: len(b.Failures)}
	if b.Pulled(now) {
		t := b.PulledUntil
		s.PulledUntil, s.Reason = &t, b.Reason
	}
	return s
}

// ProviderGauge is a provider's live routing state for metrics.
type ProviderGauge struct {
	Open bool
	// Headroom is what each limited window can still take now.
	Headroom map[string]int
}

func (h *health) gauge(p *store.Provider, team *store.Team, now time.Time) ProviderGauge {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.get(p.ID)
	g := ProviderGauge{Open: st.breaker.Pulled(now), Headroom: map[string]int{}}
	st.usage.Roll(now)
	for w, l := range h.limits(p, team) {
		if l == nil {
			continue
		}
		used := st.usage.Count[w]
		if routing.Window(w) == routing.Second {
			used = st.usage.InSecond()
		}
		g.Headroom[routing.Window(w).String()] = max(0, l.Effective(p.ID, now)-used)
	}
	return g
}

// gateRoom asks the cluster's gate whether provider id could take one
// message now (a wake decision: a gate still fetching counts as room, the
// pick finds out).
func gateRoom(g QuotaGate, id string, l routing.Limits, now time.Time) bool {
	ok, retry := g.Check(id, l, 1, now)
	return ok || !retry.After(now.Add(time.Second))
}
