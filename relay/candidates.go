package relay

import (
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// routingScope converts a stored scope to routing's view.
func routingScope(s store.Scope) routing.Scope {
	return routing.Scope{Type: s.Type, ProviderIDs: s.ProviderPublicIDs, GroupIDs: s.GroupPublicIDs}
}

// candidates converts a team's providers to routing candidates. authFailed
// holds when providers failed authentication for the message; such a
// provider stays excluded unless it was reactivated since.
func candidates(ps []*store.Provider, authFailed map[string]time.Time) []routing.Candidate {
	out := make([]routing.Candidate, 0, len(ps))
	for _, p := range ps {
		c := candidate(p)
		if at, ok := authFailed[p.ID]; ok && !p.ActivatedAt.After(at) {
			c.AuthFailed = true
		}
		out = append(out, c)
	}
	return out
}

// candidate is p as routing sees it before any message.
func candidate(p *store.Provider) routing.Candidate {
	return routing.Candidate{ID: p.ID, GroupID: p.GroupID, Status: p.Status, Managed: p.Managed, Weight: p.Percentage}
}

// activeIn is routing.HasActive over the team's providers ps without
// building their candidate list: acceptance asks it for every message,
// and a team may have 200 providers.
func activeIn(scope routing.Scope, ps []*store.Provider) bool {
	for _, p := range ps {
		if routing.HasActive(scope, []routing.Candidate{candidate(p)}) {
			return true
		}
	}
	return false
}
