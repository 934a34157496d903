package admin

// Limit-increase requests, the operator's side: the queue of every team's
// requests, approval with a new limit, denial. A decision emits
// limit_request.decided through Options.Hooks.OnLimitDecided.

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// Decisions passed to Options.Hooks.OnLimitDecided.
const (
	DecisionApproved = store.LimitApproved
	DecisionDenied   = store.LimitDenied
)

var (
	limitRequestTypes    = []string{store.LimitManagedSES, store.LimitSendingAccounts}
	limitRequestStatuses = []string{store.LimitPending, store.LimitApproved, store.LimitDenied, store.LimitCancelled}
)

// listLimitRequests is GET /operator/limit-requests: every team's
// requests, newest first, paginated, filtered by ?status=, ?team_id= and
// ?type=.
func (s *Server) listLimitRequests(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	f := store.LimitRequestFilter{Status: q.Get("status"), Type: q.Get("type"), TeamID: q.Get("team_id")}
	if f.Status != "" && !containsStr(limitRequestStatuses, f.Status) {
		return httpapi.ErrInvalidParam("status", "status must be one of pending, approved, denied, cancelled")
	}
	if f.Type != "" && !containsStr(limitRequestTypes, f.Type) {
		return httpapi.ErrInvalidParam("type", "type must be one of shared_amazon_ses, sending_accounts")
	}
	if f.TeamID != "" && !store.ValidID(store.PrefixTeam, f.TeamID) {
		return httpapi.ErrInvalidParam("team_id", "team_id must be a team ID (team_…)")
	}
	rs, more, err := s.st.LimitRequests(f, pg.after, pg.limit)
	if err != nil {
		return err
	}
	c.list(limitRequestViews(rs, true), nextPage(rs, more))
	return nil
}

// loadAnyLimitRequest resolves {id} to a request of any team.
func (s *Server) loadAnyLimitRequest(c *call) (*store.LimitRequest, error) {
	id := c.r.PathValue("id")
	if !store.ValidLimitRequestID(id) {
		return nil, httpapi.ErrNotFound("limit request")
	}
	r, err := s.st.LimitRequest(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, httpapi.ErrNotFound("limit request")
	}
	return r, err
}

// getLimitRequest is GET /operator/limit-requests/{id}.
func (s *Server) getLimitRequest(c *call) error {
	r, err := s.loadAnyLimitRequest(c)
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, limitRequestView(r, true))
	return nil
}

// currentLimit is t's limit of type typ: its override or the default.
func (s *Server) currentLimit(t *store.Team, typ string) int {
	if typ == store.LimitSendingAccounts {
		if t.ProviderLimit != nil {
			return *t.ProviderLimit
		}
		return s.opts.Providers.Limit
	}
	if t.ManagedDailyLimit != nil {
		return *t.ManagedDailyLimit
	}
	return s.opts.Managed.DailyLimit
}

// approveLimitRequest is POST /operator/limit-requests/{id}/approve with
// {"daily_limit":N} (and optionally "hourly_limit") for a
// shared_amazon_ses request or {"provider_limit":N} for a
// sending_accounts one. N must exceed the team's current limit and be at
// most 1,000,000. The new limit and the request's status are written in
// one transaction; the relay reads the team's limits at every pick, so
// the new limit applies to the next message.
func (s *Server) approveLimitRequest(c *call) error {
	cur, err := s.loadAnyLimitRequest(c)
	if err != nil {
		return err
	}
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	if err := o.Allow("daily_limit", "hourly_limit", "provider_limit"); err != nil {
		return err
	}
	daily, err := httpapi.Field[int](o, "daily_limit")
	if err != nil {
		return err
	}
	hourly, err := httpapi.Field[int](o, "hourly_limit")
	if err != nil {
		return err
	}
	accounts, err := httpapi.Field[int](o, "provider_limit")
	if err != nil {
		return err
	}
	if cur.Status != store.LimitPending {
		return s.limitRequestErr(store.ErrConflict, cur.ID)
	}

	v := &httpapi.Validator{}
	name, limit, other := "daily_limit", daily, []string{"provider_limit"}
	if cur.Type == store.LimitSendingAccounts {
		name, limit, other = "provider_limit", accounts, []string{"daily_limit", "hourly_limit"}
	}
	for _, f := range other {
		if o.Has(f) {
			v.Add(f, httpapi.FieldNotSupported, f+" does not apply to a "+cur.Type+" request; set "+name)
		}
	}
	switch {
	case !limit.Set || limit.Null:
		v.Add(name, httpapi.FieldRequired, name+" is required: the team's new limit")
	case limit.V < 1 || limit.V > maxRequestableLimit:
		v.Add(name, httpapi.FieldOutOfRange, fmt.Sprintf("%s must be between 1 and %d", name, maxRequestableLimit))
	}
	var newHourly *int
	if cur.Type == store.LimitManagedSES && hourly.Set && !hourly.Null {
		if hourly.V < 1 || hourly.V > maxRequestableLimit {
			v.Add("hourly_limit", httpapi.FieldOutOfRange, fmt.Sprintf("hourly_limit must be between 1 and %d", maxRequestableLimit))
		}
		newHourly = &hourly.V
	}
	if err := v.Err(); err != nil {
		return err
	}

	n, now := limit.V, s.now()
	r, _, err := s.st.ResolveLimitRequest("", cur.ID, func(r *store.LimitRequest, t *store.Team) error {
		// Checked against the team as committed, not as read above: an
		// approval must raise the limit.
		if old := s.currentLimit(t, r.Type); n <= old {
			return httpapi.ErrValidation(name, httpapi.FieldOutOfRange, fmt.Sprintf("%s must be above the team's current limit (%d)", name, old))
		}
		if r.Type == store.LimitSendingAccounts {
			t.ProviderLimit = &n
		} else {
			t.ManagedDailyLimit = &n
			if newHourly != nil {
				h := *newHourly
				t.ManagedHourlyLimit, r.DecidedHourlyLimit = &h, &h
			}
		}
		r.Status, r.DecidedLimit, r.DecidedBy, r.DecidedAt = store.LimitApproved, &n, store.DecidedByOperator, &now
		return nil
	})
	if err != nil {
		return s.limitRequestErr(err, cur.ID)
	}
	s.log.Info("limit request approved", "request_id", c.reqID, "limit_request", r.ID, "team", r.TeamID,
		"type", r.Type, "limit", n)
	s.limitDecided(r)
	c.ok(http.StatusOK, limitRequestView(r, true))
	return nil
}

// denyLimitRequest is POST /operator/limit-requests/{id}/deny with an
// optional {"reason"}, which the team sees as decision_reason.
func (s *Server) denyLimitRequest(c *call) error {
	cur, err := s.loadAnyLimitRequest(c)
	if err != nil {
		return err
	}
	_, v, reason, err := readReasonBody(c.r)
	if err != nil {
		return err
	}
	if cur.Status != store.LimitPending {
		return s.limitRequestErr(store.ErrConflict, cur.ID)
	}
	if err := v.Err(); err != nil {
		return err
	}
	now := s.now()
	r, _, err := s.st.ResolveLimitRequest("", cur.ID, func(r *store.LimitRequest, _ *store.Team) error {
		r.Status, r.DecisionReason, r.DecidedBy, r.DecidedAt = store.LimitDenied, reason, store.DecidedByOperator, &now
		return nil
	})
	if err != nil {
		return s.limitRequestErr(err, cur.ID)
	}
	s.log.Info("limit request denied", "request_id", c.reqID, "limit_request", r.ID, "team", r.TeamID, "type", r.Type)
	s.limitDecided(r)
	c.ok(http.StatusOK, limitRequestView(r, true))
	return nil
}

// limitDecided reports a committed decision to Options.Hooks.OnLimitDecided
// (limit_request.decided); nil means nobody listens.
func (s *Server) limitDecided(r *store.LimitRequest) {
	if s.opts.Hooks.OnLimitDecided != nil {
		s.opts.Hooks.OnLimitDecided(r.TeamID, r.ID, r.Status)
	}
}
