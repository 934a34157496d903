package relay

import (
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// routingScope converts a stored scope to routing's view.
func routingScope(s store.Scope) routing.Scope {
	return routing.Scope{Type: s.Type, ProviderIDs: s.ProviderPublicIDs, GroupIDs: s.GroupPublicIDs}
}

// candidates converts a team's providers to routing candidates. authFailed
// lists providers that already failed authentication for the message.
func candidates(ps []*store.Provider, authFailed []string) []routing.Candidate {
	out := make([]routing.Candidate, 0, len(ps))
	for _, p := range ps {
		c := routing.Candidate{
			ID: p.ID, GroupID: p.GroupID, Status: p.Status, Shared: p.IsShared, Weight: p.Percentage,
		}
		for _, id := range authFailed {
			if id == p.ID {
				c.AuthFailed = true
			}
		}
		out = append(out, c)
	}
	return out
}
