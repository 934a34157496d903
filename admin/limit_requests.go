package admin

// Limit-increase requests, the team's side (SPEC §2): a review of the
// managed account's daily limit (GET/POST /providers/shared-amazon-ses-
// limit-request, DELETE …/{request_id}) and more own providers
// (POST /providers/limits/sending-accounts/request-increase). Each may be
// filed from 80% usage of its limit, one pending per team and limit. The
// operator decides them (operator_limits.go).

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

const (
	// maxReasonChars bounds the free-text reason of a request or denial.
	maxReasonChars = 1000
	// maxRequestableLimit bounds requested and approved limits (daily
	// recipients of the managed account, own providers alike).
	maxRequestableLimit = 1_000_000
)

// limitRequestItem is a limit-increase request as the API shows it.
// TeamID is set in the operator's view only: a team knows its own.
type limitRequestItem struct {
	ID     string  `json:"id"`
	TeamID string  `json:"team_id,omitempty"`
	Type   string  `json:"type"`
	Status string  `json:"status"`
	Reason *string `json:"reason"`
	// RequestedLimit is the limit the team asked for, null when it left
	// that to the operator.
	RequestedLimit *int `json:"requested_limit"`
	// Usage and CurrentLimit are the figures when the request was filed.
	Usage        int `json:"usage"`
	CurrentLimit int `json:"current_limit"`
	// DecidedLimit is the limit an approval set.
	DecidedLimit   *int    `json:"decided_limit"`
	DecisionReason *string `json:"decision_reason"`
	// DecidedBy is "operator" (approved, denied) or "team" (cancelled).
	DecidedBy   *string `json:"decided_by"`
	RequestedAt string  `json:"requested_at"`
	DecidedAt   *string `json:"decided_at"` // when it left pending
}

// managedSESRequestItem adds the hosted API's names for the outcome of a
// managed-account review.
type managedSESRequestItem struct {
	limitRequestItem
	DailyLimit *int `json:"daily_limit"` // the new daily limit, once approved
	// HourlyLimit is the new hourly limit when the approval changed it.
	HourlyLimit *int `json:"hourly_limit"`
}

// sendingAccountsRequestItem names the outcome of an own-provider request.
type sendingAccountsRequestItem struct {
	limitRequestItem
	ProviderLimit *int `json:"provider_limit"` // the new limit, once approved
}

// limitRequestView renders r; operator adds the team.
func limitRequestView(r *store.LimitRequest, operator bool) any {
	it := limitRequestItem{
		ID: r.ID, Type: r.Type, Status: r.Status, Reason: nullable(r.Reason),
		RequestedLimit: r.RequestedLimit, Usage: r.Usage, CurrentLimit: r.CurrentLimit,
		DecidedLimit: r.DecidedLimit, DecisionReason: nullable(r.DecisionReason), DecidedBy: nullable(r.DecidedBy),
		RequestedAt: rfc3339(r.RequestedAt), DecidedAt: rfc3339p(r.DecidedAt),
	}
	if operator {
		it.TeamID = r.TeamID
	}
	if r.Type == store.LimitSendingAccounts {
		return sendingAccountsRequestItem{limitRequestItem: it, ProviderLimit: r.DecidedLimit}
	}
	return managedSESRequestItem{limitRequestItem: it, DailyLimit: r.DecidedLimit, HourlyLimit: r.DecidedHourlyLimit}
}

// limitNames are the human names of the two limits, for messages.
var limitNames = map[string]string{
	store.LimitManagedSES:      "shared Amazon SES daily limit",
	store.LimitSendingAccounts: "sending accounts limit",
}

// pendingLimitRequestID is the ID of the team's pending request of typ,
// nil when there is none (GET /providers/limits' pending_request_id).
func (s *Server) pendingLimitRequestID(teamID, typ string) (*string, error) {
	r, err := s.st.PendingLimitRequest(teamID, typ)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r.ID, nil
}

// managedProvider is the team's managed account, nil when it has none.
func (s *Server) managedProvider(teamID string) (*store.Provider, error) {
	ps, err := s.st.Providers(teamID)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if p.Managed && p.Type == store.TypeManagedSES {
			return p, nil
		}
	}
	return nil, nil
}

// managedSESUsage is today's managed-account usage and daily limit, the
// figures of GET /providers/limits' shared_amazon_ses snapshot.
func (s *Server) managedSESUsage(teamID string) (used, limit int, err error) {
	ps, err := s.st.Providers(teamID)
	if err != nil {
		return 0, 0, err
	}
	if limit, err = s.managedDailyLimit(teamID); err != nil {
		return 0, 0, err
	}
	for _, p := range ps {
		if p.Managed && p.Type == store.TypeManagedSES {
			used, err = s.managedUsage(teamID, p, s.now())
			return used, limit, err
		}
	}
	return 0, limit, nil // no managed account: nothing used
}

// sendingAccountsUsage is the number of own providers and the team's
// limit on them, the figures of the sending_accounts snapshot.
func (s *Server) sendingAccountsUsage(teamID string) (used, limit int, err error) {
	ps, err := s.st.Providers(teamID)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range ps {
		if !p.Managed {
			used++
		}
	}
	limit, err = s.providerLimit(teamID)
	return used, limit, err
}

// readOptionalBody is httpapi.ReadBody for endpoints whose body may be left out
// entirely: no body (or only whitespace) is an empty object.
func readOptionalBody(r *http.Request) (*httpapi.Object, error) {
	data, err := httpapi.ReadRaw(r, httpapi.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &httpapi.Object{}, nil
	}
	return httpapi.ParseObject("", data)
}

// readReasonBody reads the optional body of a request that may give a
// "reason" (and the members also named), with the reason checked into a
// new validator; the caller adds its own checks and answers v.Err().
func readReasonBody(r *http.Request, also ...string) (*httpapi.Object, *httpapi.Validator, string, error) {
	o, err := readOptionalBody(r)
	if err != nil {
		return nil, nil, "", err
	}
	if err := o.Allow(append([]string{"reason"}, also...)...); err != nil {
		return nil, nil, "", err
	}
	v := &httpapi.Validator{}
	reason, err := checkReason(o, v, "reason")
	return o, v, reason, err
}

// checkReason reads an optional free-text member: trimmed, at most
// maxReasonChars characters, line breaks and tabs allowed but no other
// control characters. Absent, null and blank are all "no reason".
func checkReason(o *httpapi.Object, v *httpapi.Validator, name string) (string, error) {
	f, err := httpapi.Field[string](o, name)
	if err != nil || !f.Set || f.Null {
		return "", err
	}
	s := strings.TrimSpace(f.V)
	switch {
	case utf8.RuneCountInString(s) > maxReasonChars:
		v.Add(name, httpapi.FieldTooLong, name+" must be at most "+strconv.Itoa(maxReasonChars)+" characters")
	case !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t'
	}) >= 0:
		v.Add(name, httpapi.FieldInvalid, name+" must not contain control characters other than line breaks and tabs")
	}
	return s, nil
}

// errBelowThreshold is the 422 of a request filed under 80% usage.
func errBelowThreshold(typ string, used, limit int) error {
	return &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: httpapi.CodeValidation,
		Message: fmt.Sprintf("an increase of the %s can be requested from %d%% usage: %d of %d used, %d needed",
			limitNames[typ], 80, used, limit, thresholdUsage(limit))}
}

func errPendingExists(typ, id string) error {
	msg := "a request to increase the " + limitNames[typ] + " is already pending"
	if id != "" {
		msg += " (" + id + ")"
	}
	return httpapi.ErrConflict(msg + "; wait for the operator's decision")
}

// fileLimitRequest stores a new pending request of typ for the team once
// the usage allows it: a pending one first answers 409 (it says more
// than the threshold), usage under 80% 422. The store re-checks "one
// pending" in the insert's transaction, so concurrent calls cannot both
// succeed.
//
// The answer is the hosted API's {"request_id","limit"} (limit: the
// snapshot GET /providers/limits shows for this limit, now naming the
// request as pending) plus smtpmux's view of the request itself.
func (s *Server) fileLimitRequest(c *call, typ, reason string, requested *int, used, limit int,
	snapshot func(pending *string) (any, error)) error {
	if id, err := s.pendingLimitRequestID(c.team(), typ); err != nil {
		return err
	} else if id != nil {
		return errPendingExists(typ, *id)
	}
	if !nearLimit(used, limit) {
		return errBelowThreshold(typ, used, limit)
	}
	r := &store.LimitRequest{
		ID: store.NewID(store.PrefixLimitRequest), TeamID: c.team(), Type: typ, Reason: reason,
		RequestedLimit: requested, Usage: used, CurrentLimit: limit, RequestedAt: s.now(),
	}
	if err := s.st.CreateLimitRequest(r); errors.Is(err, store.ErrConflict) {
		return errPendingExists(typ, "")
	} else if err != nil {
		return err
	}
	s.log.Info("limit increase requested", "request_id", c.reqID, "limit_request", r.ID, "type", typ,
		"team", r.TeamID, "usage", used, "limit", limit)
	snap, err := snapshot(&r.ID)
	if err != nil {
		return err
	}
	c.ok(http.StatusCreated, filedRequestView(r, snap))
	return nil
}

// filedManagedSESRequest and filedSendingAccountsRequest are the answers
// to filing a request: the hosted API's request_id and limit, with the
// request's own fields (id, type, status, …) alongside.
type filedManagedSESRequest struct {
	RequestID string `json:"request_id"`
	Limit     any    `json:"limit"`
	managedSESRequestItem
}

type filedSendingAccountsRequest struct {
	RequestID string `json:"request_id"`
	Limit     any    `json:"limit"`
	sendingAccountsRequestItem
}

func filedRequestView(r *store.LimitRequest, snap any) any {
	switch v := limitRequestView(r, false).(type) {
	case managedSESRequestItem:
		return filedManagedSESRequest{RequestID: r.ID, Limit: snap, managedSESRequestItem: v}
	case sendingAccountsRequestItem:
		return filedSendingAccountsRequest{RequestID: r.ID, Limit: snap, sendingAccountsRequestItem: v}
	}
	panic("limitRequestView: unknown view type")
}

// listManagedSESRequests is GET /providers/shared-amazon-ses-limit-request:
// the team's managed-account reviews, newest first, paginated.
func (s *Server) listManagedSESRequests(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	rs, more, err := s.st.LimitRequests(store.LimitRequestFilter{TeamID: c.team(), Type: store.LimitManagedSES}, pg.after, pg.limit)
	if err != nil {
		return err
	}
	c.list(limitRequestViews(rs, false), nextPage(rs, more))
	return nil
}

func limitRequestViews(rs []*store.LimitRequest, operator bool) []any {
	out := make([]any, 0, len(rs))
	for _, r := range rs {
		out = append(out, limitRequestView(r, operator))
	}
	return out
}

// nextPage is the pagination of a newest-first page of requests.
func nextPage(rs []*store.LimitRequest, more bool) httpapi.Pagination {
	if !more || len(rs) == 0 {
		return httpapi.Pagination{}
	}
	next := base64.RawURLEncoding.EncodeToString([]byte(rs[len(rs)-1].ID))
	return httpapi.Pagination{HasMore: true, NextCursor: &next}
}

// createManagedSESRequest is POST /providers/shared-amazon-ses-limit-request
// with an optional {"reason"}: from 80% of today's daily limit (the
// usage GET /providers/limits reports) a review of the limit.
func (s *Server) createManagedSESRequest(c *call) error {
	_, v, reason, err := readReasonBody(c.r)
	if err != nil {
		return err
	}
	if err := v.Err(); err != nil {
		return err
	}
	// Cluster mode: the 80% threshold and the answer's snapshot count
	// every node's part of today's usage, as GET /providers/limits does.
	peers, err := s.peerManagedCounts(c, s.fanOutPath(c, providerLimitsPath, nil))
	if err != nil {
		return err
	}
	used, limit, err := s.managedSESUsage(c.team())
	if err != nil {
		return err
	}
	used += peers.DaySent + peers.DayReserved
	return s.fileLimitRequest(c, store.LimitManagedSES, reason, nil, used, limit, func(pending *string) (any, error) {
		managed, err := s.managedProvider(c.team())
		if err != nil {
			return nil, err
		}
		return s.managedSESSnapshot(c.team(), managed, pending, peers)
	})
}

// requestSendingAccountsIncrease is POST /providers/limits/sending-
// accounts/request-increase with an optional {"reason","requested_limit"}:
// from 80% of the own-provider limit, a request for more.
func (s *Server) requestSendingAccountsIncrease(c *call) error {
	o, v, reason, err := readReasonBody(c.r, "requested_limit")
	if err != nil {
		return err
	}
	req, err := httpapi.Field[int](o, "requested_limit")
	if err != nil {
		return err
	}
	used, limit, err := s.sendingAccountsUsage(c.team())
	if err != nil {
		return err
	}
	var requested *int
	if req.Set && !req.Null {
		if req.V <= limit || req.V > maxRequestableLimit {
			v.Add("requested_limit", httpapi.FieldOutOfRange, fmt.Sprintf("requested_limit must be above the current limit (%d) and at most %d", limit, maxRequestableLimit))
		}
		requested = &req.V
	}
	if err := v.Err(); err != nil {
		return err
	}
	return s.fileLimitRequest(c, store.LimitSendingAccounts, reason, requested, used, limit, func(pending *string) (any, error) {
		return newSendingAccountsLimit(used, limit, pending), nil
	})
}

// cancelManagedSESRequest is DELETE /providers/shared-amazon-ses-limit-
// request/{request_id}: the team withdraws its pending review (200 with
// the request, now cancelled); a decided or cancelled one is 409.
func (s *Server) cancelManagedSESRequest(c *call) error {
	id := c.r.PathValue("request_id")
	if !store.ValidLimitRequestID(id) {
		return httpapi.ErrNotFound("limit request")
	}
	// Another team's request, or one of the other limit, is not in this
	// collection: 404 whatever its status.
	if cur, err := s.st.LimitRequest(id); err != nil || cur.TeamID != c.team() || cur.Type != store.LimitManagedSES {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return httpapi.ErrNotFound("limit request")
	}
	now := s.now()
	r, _, err := s.st.ResolveLimitRequest(c.team(), id, func(r *store.LimitRequest, _ *store.Team) error {
		if r.Type != store.LimitManagedSES {
			return store.ErrNotFound // not one of this collection
		}
		r.Status, r.DecidedBy, r.DecidedAt = store.LimitCancelled, store.DecidedByTeam, &now
		return nil
	})
	if err != nil {
		return s.limitRequestErr(err, id)
	}
	s.log.Info("limit request cancelled", "request_id", c.reqID, "limit_request", r.ID, "team", r.TeamID)
	c.ok(http.StatusOK, limitRequestView(r, false))
	return nil
}

// limitRequestErr maps the store's answers to resolving a request; a
// request that is no longer pending is 409, naming its status.
func (s *Server) limitRequestErr(err error, id string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return httpapi.ErrNotFound("limit request")
	case errors.Is(err, store.ErrConflict):
		msg := "this limit request is no longer pending"
		if r, e := s.st.LimitRequest(id); e == nil {
			msg = "this limit request is already " + r.Status + "; only a pending request can be changed"
		}
		return httpapi.ErrConflict(msg)
	}
	return err
}
