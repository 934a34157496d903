package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// routeSet is a team's providers in one send scope, as routing sees them
// before any message: in scope, sorted by ID, with their configured
// weights and quota limits. It is built once per team, scope and provider
// list (the registry reloads the list when any provider changed), so the
// per-message work of a pick is one pass that adds live breaker, quota and
// per-message state, not a conversion, a sort and an explanation over
// every provider of the team.
type routeSet struct {
	// from identifies the provider list it was built from: the registry
	// hands out a new slice after every reload.
	from  *store.Provider
	n     int
	cands []routing.Candidate // static fields only
	provs []*store.Provider   // provs[i] is cands[i]'s record
	// limits[i] are provs[i]'s quota limits; a managed account's depend
	// on its team's overrides and are read at each pick instead.
	limits []routing.Limits
	// states[i] is provs[i]'s live state in the scheduler's health,
	// filled and read under health.mu (pickSet).
	states []*provState
	set    []routing.Weighted
	// ref's hash part names body, the set's stored form; written is the
	// UTC day (store.RouteSetDayLayout) it was last stored for.
	hash    string
	body    []byte
	written string
}

// newRouteSet builds the set of scope over the team's providers ps.
func newRouteSet(scope store.Scope, ps []*store.Provider) *routeSet {
	rs := &routeSet{n: len(ps)}
	if len(ps) > 0 {
		rs.from = ps[0]
	}
	byID := make(map[string]*store.Provider, len(ps))
	for _, p := range ps {
		byID[p.ID] = p
	}
	rs.cands = routing.SortInScope(routingScope(scope), candidates(ps, nil))
	rs.provs = make([]*store.Provider, len(rs.cands))
	rs.limits = make([]routing.Limits, len(rs.cands))
	h := health{}
	for i, c := range rs.cands {
		p := byID[c.ID]
		rs.provs[i] = p
		if !p.Managed {
			rs.limits[i] = h.limits(p, nil)
		}
	}
	rs.set = routing.SetOf(rs.cands)
	rs.body, _ = json.Marshal(rs.set)
	sum := sha256.Sum256(rs.body)
	rs.hash = hex.EncodeToString(sum[:16])
	return rs
}

// builtFrom reports whether rs was built from the provider list ps.
func (rs *routeSet) builtFrom(ps []*store.Provider) bool {
	if len(ps) == 0 {
		return rs.n == 0
	}
	return rs.n == len(ps) && rs.from == ps[0]
}

// routeSets caches the route sets of the teams and scopes that send.
type routeSets struct {
	mu   sync.Mutex
	sets map[string]*routeSet
}

// get returns the set of team's scope over its current provider list ps.
func (c *routeSets) get(teamID string, scope store.Scope, ps []*store.Provider) *routeSet {
	key := teamID + "\x00" + scope.Type + "\x00" + strings.Join(scope.ProviderPublicIDs, ",") +
		"\x00" + strings.Join(scope.GroupPublicIDs, ",")
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.sets[key]
	if rs == nil || !rs.builtFrom(ps) {
		if c.sets == nil {
			c.sets = map[string]*routeSet{}
		}
		rs = newRouteSet(scope, ps)
		c.sets[key] = rs
	}
	return rs
}

// stored returns the explanation an attempt of message m keeps: the
// decision and a reference to rs, stored first for at's UTC day if it
// was not yet. A set that cannot be stored is not referred to: the
// explanation is then kept whole, as before sets existed.
func (s *Scheduler) stored(rs *routeSet, m *store.Message, d routing.Decision, at time.Time) []byte {
	day := at.UTC().Format(store.RouteSetDayLayout)
	s.routes.mu.Lock()
	written := rs.written == day
	s.routes.mu.Unlock()
	if !written {
		if err := s.store.PutRouteSet(m.TeamID, day, rs.hash, rs.body); err != nil {
			s.log.Error("storing routing set failed", "team", m.TeamID, "err", err)
			b, _ := json.Marshal(routing.Expand(m.Scope.Type, rs.set, d))
			return b
		}
		s.routes.mu.Lock()
		rs.written = day
		s.routes.mu.Unlock()
	}
	scopeType := m.Scope.Type
	if scopeType == "" {
		scopeType = "all"
	}
	b, _ := json.Marshal(routing.Stored{ScopeType: scopeType, Set: day + "/" + rs.hash, Decision: d})
	return b
}
