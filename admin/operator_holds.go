package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// The operator's side of the managed account's safety hold (SPEC §13):
// which teams' managed accounts are held and why, and the release. A
// team cannot release its own hold (activating the account answers 409).

// heldItem is one held managed account.
type heldItem struct {
	TeamID     string `json:"team_id"`
	ProviderID string `json:"provider_id"`
	Reason     string `json:"reason"`
	HeldAt     string `json:"held_at"`
}

// listHeldTeams is GET /operator/held-teams.
func (s *Server) listHeldTeams(c *call) error {
	ps, err := s.st.HeldManaged()
	if err != nil {
		return err
	}
	out := make([]heldItem, 0, len(ps))
	for _, p := range ps {
		if p.Held != nil {
			out = append(out, heldItem{TeamID: p.TeamID, ProviderID: p.ID, Reason: p.Held.Reason, HeldAt: rfc3339(p.Held.At)})
		}
	}
	c.ok(http.StatusOK, out)
	return nil
}

// releaseHeldTeam is POST /operator/teams/{id}/release-managed-account:
// the team's managed account is active again.
func (s *Server) releaseHeldTeam(c *call) error {
	teamID := c.r.PathValue("id")
	if !store.ValidID(store.PrefixTeam, teamID) {
		return httpapi.ErrNotFound("held managed account")
	}
	p, err := s.st.ReleaseManaged(teamID, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return httpapi.ErrNotFound("held managed account")
	}
	if err != nil {
		return err
	}
	s.log.Info("managed account released", "request_id", c.reqID, "team", teamID)
	id := ""
	if p != nil {
		id = p.ID
	}
	c.ok(http.StatusOK, map[string]any{"team_id": teamID, "provider_id": nullable(id), "released": true})
	return nil
}

// heldRefusal is the answer to a team activating its held account.
func heldRefusal(p *store.Provider) error {
	return &httpapi.Error{Status: http.StatusConflict, Code: httpapi.CodeConflict,
		Message: "the managed account is held by the operator for deliverability (" + strings.TrimPrefix(p.StatusReason, "held: ") +
			"); only the operator can release it"}
}
