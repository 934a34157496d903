package store

// Limit-increase requests (SPEC §2): a team asks the operator for a higher
// managed-account daily limit or a higher own-provider limit; the operator
// approves (with the new limit) or denies; the team may cancel while the
// request is pending. At most one request per team and type is pending.

import (
	"bytes"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bLimitRequests   = []byte("limit_requests")         // request id → LimitRequest
	bLimitReqByTeam  = []byte("limit_requests_by_team") // team id || request id → nil
	bLimitReqPending = []byte("limit_requests_pending") // team id || ":" || type → request id
)

// PrefixLimitRequest is the public ID prefix of limit-increase requests,
// the hosted API's ("trir_…", team resource increase request).
const PrefixLimitRequest = "trir_"

// prefixLimitRequestLegacy is the prefix requests were filed with before
// smtpmux took the hosted API's; such requests keep their IDs.
const prefixLimitRequestLegacy = "lreq_"

// ValidLimitRequestID reports whether id has the shape of a limit
// request's ID, new or legacy.
func ValidLimitRequestID(id string) bool {
	return ValidID(PrefixLimitRequest, id) || ValidID(prefixLimitRequestLegacy, id)
}

// Limit request types: which limit the request is about.
const (
	LimitManagedSES      = "shared_amazon_ses" // the managed account's daily limit (Team.ManagedDailyLimit)
	LimitSendingAccounts = "sending_accounts"  // the own-provider limit (Team.ProviderLimit)
)

// Limit request statuses. Only pending requests change; the other three
// are final.
const (
	LimitPending   = "pending"
	LimitApproved  = "approved"
	LimitDenied    = "denied"
	LimitCancelled = "cancelled"
)

// Who resolved a request (LimitRequest.DecidedBy).
const (
	DecidedByOperator = "operator"
	DecidedByTeam     = "team" // the team cancelled it
)

// LimitRequest is one limit-increase request of a team.
type LimitRequest struct {
	ID     string `json:"id"`
	TeamID string `json:"team_id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	// Reason is the team's free-text justification ("" for none).
	Reason string `json:"reason,omitempty"`
	// RequestedLimit is the limit the team asked for, if it named one.
	RequestedLimit *int `json:"requested_limit,omitempty"`
	// Usage and CurrentLimit are the figures the request was filed at,
	// so the operator sees what the team saw.
	Usage        int `json:"usage"`
	CurrentLimit int `json:"current_limit"`
	// DecidedLimit is the limit an approval set.
	DecidedLimit *int `json:"decided_limit,omitempty"`
	// DecidedHourlyLimit is the managed hourly limit an approval of a
	// shared_amazon_ses request set, if the operator changed it too.
	DecidedHourlyLimit *int `json:"decided_hourly_limit,omitempty"`
	// DecisionReason is the operator's note on a denial.
	DecisionReason string     `json:"decision_reason,omitempty"`
	DecidedBy      string     `json:"decided_by,omitempty"`
	RequestedAt    time.Time  `json:"requested_at"`
	DecidedAt      *time.Time `json:"decided_at,omitempty"` // when it left pending, by any route
}

func limitPendingKey(teamID, typ string) []byte { return []byte(teamID + ":" + typ) }

func putLimitRequest(tx *bolt.Tx, r *LimitRequest) error {
	if err := putJSON(tx.Bucket(bLimitRequests), r.ID, r); err != nil {
		return err
	}
	if err := tx.Bucket(bLimitReqByTeam).Put([]byte(r.TeamID+r.ID), nil); err != nil {
		return err
	}
	pk, pending := limitPendingKey(r.TeamID, r.Type), tx.Bucket(bLimitReqPending)
	if r.Status == LimitPending {
		return pending.Put(pk, []byte(r.ID))
	}
	if bytes.Equal(pending.Get(pk), []byte(r.ID)) {
		return pending.Delete(pk)
	}
	return nil
}

// CreateLimitRequest stores a new pending request, unless its team already
// has a pending request of the same type (ErrConflict). The check and the
// insert share one transaction, so two concurrent requests cannot both be
// pending.
func (s *Store) CreateLimitRequest(r *LimitRequest) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		if tx.Bucket(bLimitRequests).Get([]byte(r.ID)) != nil {
			return ErrConflict
		}
		if tx.Bucket(bLimitReqPending).Get(limitPendingKey(r.TeamID, r.Type)) != nil {
			return ErrConflict
		}
		r.Status = LimitPending
		return putLimitRequest(tx, r)
	})
}

// LimitRequest returns a request of any team (the operator's lookup).
func (s *Store) LimitRequest(id string) (*LimitRequest, error) {
	var r LimitRequest
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bLimitRequests), id, &r) }); err != nil {
		return nil, err
	}
	return &r, nil
}

// PendingLimitRequest returns the team's pending request of type typ, or
// ErrNotFound when there is none.
func (s *Store) PendingLimitRequest(teamID, typ string) (*LimitRequest, error) {
	var r LimitRequest
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bLimitReqPending).Get(limitPendingKey(teamID, typ))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bLimitRequests), string(id), &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// LimitRequestFilter selects requests; empty fields match everything.
type LimitRequestFilter struct {
	TeamID, Type, Status string
}

func (f LimitRequestFilter) match(r *LimitRequest) bool {
	return (f.TeamID == "" || r.TeamID == f.TeamID) && (f.Type == "" || r.Type == f.Type) &&
		(f.Status == "" || r.Status == f.Status)
}

// LimitRequests lists requests matching f newest first: up to limit of
// them whose ID sorts below before ("" for the newest). more reports
// whether older matching ones exist. With a team the walk uses the team
// index; without one it walks every request (the operator's queue, small).
func (s *Store) LimitRequests(f LimitRequestFilter, before string, limit int) (out []*LimitRequest, more bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bLimitRequests)
		// Keys of the walk: team ID || request ID in the team index,
		// the request ID itself in the main bucket.
		// The main bucket holds requests only (legacy lreq_ IDs sort
		// below trir_ ones, as they are older), so it needs no prefix.
		c, prefix, skip := recs.Cursor(), []byte(nil), 0
		if f.TeamID != "" {
			c, prefix = tx.Bucket(bLimitReqByTeam).Cursor(), []byte(f.TeamID)
			skip = len(prefix)
		}
		// Start right below before, or past every key of the prefix.
		start := append(bytes.Clone(prefix), 0xff)
		if before != "" {
			start = append(bytes.Clone(prefix[:skip]), before...)
		}
		k, _ := c.Seek(start)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			var r LimitRequest
			if err := getJSON(recs, string(k[skip:]), &r); err != nil {
				continue // an index entry without its record: skip
			}
			if !f.match(&r) {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			out = append(out, &r)
		}
		return nil
	})
	return out, more, err
}

// ResolveLimitRequest applies fn to a pending request and to its team in
// one transaction and saves both: an approval's new limit and the
// request's new status become durable together. teamID "" accepts any
// team (the operator); another team's request is ErrNotFound; a request
// that is no longer pending is ErrConflict, checked before fn runs. fn
// must move the request out of pending; it may return an error (which is
// returned as-is and nothing is written), may run more than once and must
// be deterministic.
func (s *Store) ResolveLimitRequest(teamID, id string, fn func(*LimitRequest, *Team) error) (*LimitRequest, *Team, error) {
	var outR LimitRequest
	var outT Team
	err := s.updateRecord(func(tx *bolt.Tx) error {
		var r LimitRequest
		if err := getJSON(tx.Bucket(bLimitRequests), id, &r); err != nil {
			return err
		}
		if teamID != "" && r.TeamID != teamID {
			return ErrNotFound
		}
		if r.Status != LimitPending {
			return ErrConflict
		}
		var t Team
		if err := getJSON(tx.Bucket(bTeams), r.TeamID, &t); err != nil {
			return err
		}
		team, typ := r.TeamID, r.Type
		if err := fn(&r, &t); err != nil {
			return err
		}
		if r.Status == LimitPending {
			return ErrConflict // fn did not resolve it: nothing to write
		}
		// Identity is not fn's to change (the indexes depend on it).
		r.ID, r.TeamID, r.Type, t.ID = id, team, typ, team
		if err := putJSON(tx.Bucket(bTeams), t.ID, &t); err != nil {
			return err
		}
		outR, outT = r, t
		return putLimitRequest(tx, &r)
	})
	if err != nil {
		return nil, nil, err
	}
	return &outR, &outT, nil
}
