package admin

import (
	"math"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// usageWindow is the period of the *_7d counters: the last 7×24 hours,
// rolling, by message creation time.
const usageWindow = 7 * 24 * time.Hour

// usageItem is one provider's line of GET /providers/usage.
//
// The unit is the recipient delivery, not the message: quotas and the
// managed account's limits count recipients, and a message to three
// recipients can end sent to two and rejected for one, which a per-message
// count could not show. A recipient counts for the provider its result
// names (Recipient.ProviderID) or, while it has none (pending after a
// deferral, failed before any upstream reply), for the provider of the
// message's latest attempt. A recipient never attempted yet belongs to no
// provider and is not counted anywhere.
type usageItem struct {
	ProviderID string `json:"provider_id"`
	// SentToday counts recipients sent since 00:00 UTC (by the time of
	// their result) among messages of the 7-day window.
	SentToday  int `json:"sent_today"`
	Total7d    int `json:"total_7d"`
	Sent7d     int `json:"sent_7d"`
	Failed7d   int `json:"failed_7d"`
	Rejected7d int `json:"rejected_7d"`
	Pending7d  int `json:"pending_7d"`
}

// usageReport is the GET /providers/usage answer.
type usageReport struct {
	Providers   []*usageItem `json:"providers"`
	WindowStart string       `json:"window_start"` // start of the *_7d window
	DayStart    string       `json:"day_start"`    // start of the sent_today window
}

// dayStart is 00:00 UTC of t's day: the managed limit and sent_today reset
// then (SPEC §2).
func dayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// countUsage tallies the team's recipient results of messages created
// since `since` into one usageItem per provider of ps (in ps order).
// Recipients attributed to providers not in ps (deleted ones) are left
// out: there is no line to put them on.
func (s *Server) countUsage(teamID string, ps []*store.Provider, since, today time.Time) ([]*usageItem, error) {
	out := make([]*usageItem, 0, len(ps))
	byID := make(map[string]*usageItem, len(ps))
	for _, p := range ps {
		it := &usageItem{ProviderID: p.ID}
		out = append(out, it)
		byID[p.ID] = it
	}
	tally := func(providerID, status string, n int) {
		it := byID[providerID]
		if it == nil {
			return
		}
		switch status {
		case string(state.MessageSent):
			it.Sent7d += n
		case string(state.MessageFailed):
			it.Failed7d += n
		case string(state.MessageRejected):
			it.Rejected7d += n
		case string(state.MessagePending):
			it.Pending7d += n
		default:
			return // a status this code does not know is not guessed at
		}
		it.Total7d += n
	}
	// The window's first, partial minute is counted from the team's
	// messages; everything after it from the counters kept as mail flows
	// (store.RecipientCounts), which attribute recipients as this does.
	edge := ceilMinute(since)
	err := s.st.MessagesBetween(teamID, since, edge, func(m *store.Message) bool {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			p := m.ResultProvider(r)
			tally(p, string(r.Status), 1)
			if it := byID[p]; it != nil && r.Status == state.MessageSent {
				at := m.UpdatedAt
				if r.UpdatedAt != nil {
					at = *r.UpdatedAt
				}
				if !at.Before(today) {
					it.SentToday++
				}
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	err = s.st.RecipientCounts(teamID, edge, func(_ time.Time, providerID, status string, n int64) {
		tally(providerID, status, int(n))
	})
	if err != nil {
		return nil, err
	}
	err = s.st.SentCounts(teamID, edge, func(_ time.Time, providerID string, day time.Time, n int64) {
		if it := byID[providerID]; it != nil && !day.Before(today) {
			it.SentToday += int(n)
		}
	})
	return out, err
}

// providerUsage is GET /providers/usage. It reads the team's counters of
// the last 7 days (one key per hour, provider and status; per minute in
// the first hour) and the messages of the window's first, partial minute, so its cost does not grow
// with the team's volume, nor depend on other teams at all.
//
// Cluster mode: each node counts the mail it accepted, summed here
// (fanout.go). GET /providers/stats needs no fan-out: it counts
// providers, which are state of record, the same on every node.
func (s *Server) providerUsage(c *call) error {
	ps, err := s.st.Providers(c.team())
	if err != nil {
		return err
	}
	fo := s.fanOut(c, c.r.URL.Query())
	now := s.now()
	since, today := now.Add(-usageWindow), dayStart(now)
	items, err := s.countUsage(c.team(), ps, since, today)
	if err != nil {
		return err
	}
	if fo != nil {
		bodies, err := fo.wait()
		if err != nil {
			return err
		}
		for _, b := range bodies {
			var part usageReport
			if _, err := nodeData(b, &part); err != nil {
				return s.errNodeAnswer(c, err)
			}
			addUsage(items, part.Providers)
		}
	}
	c.ok(http.StatusOK, usageReport{Providers: items, WindowStart: rfc3339(since), DayStart: rfc3339(today)})
	return nil
}

// providerStats is GET /providers/stats: counts by status and by type,
// the managed account included (it is one of the team's providers, as in
// GET /providers). Every known status and type is present, zero or not,
// so clients need no "missing means 0" rule. The flat per-status counts
// repeat by_status for clients of the hosted API, which has both.
func (s *Server) providerStats(c *call) error {
	ps, err := s.st.Providers(c.team())
	if err != nil {
		return err
	}
	byStatus, byType := map[state.Provider]int{}, map[string]int{}
	for _, st := range providerStatuses {
		byStatus[st] = 0
	}
	for _, t := range providerTypes {
		byType[t] = 0
	}
	for _, p := range ps {
		byStatus[p.Status]++
		byType[p.Type]++
	}
	data := map[string]any{"total": len(ps), "by_status": byStatus, "by_type": byType}
	for _, st := range providerStatuses {
		data[string(st)] = byStatus[st]
	}
	c.ok(http.StatusOK, data)
	return nil
}

// limitState is the part both limit snapshots share (SPEC §3 plus the
// hosted API's threshold_usage and is_at_limit).
type limitState struct {
	Usage              int     `json:"usage"`
	MaxAllowed         int     `json:"max_allowed"`
	ThresholdUsage     int     `json:"threshold_usage"` // usage from which an increase may be requested
	UsageRatio         float64 `json:"usage_ratio"`     // usage / max_allowed, 0–1 (may exceed 1 after a lowered limit)
	IsAtLimit          bool    `json:"is_at_limit"`
	IsNearLimit        bool    `json:"is_near_limit"`
	CanRequestIncrease bool    `json:"can_request_increase"`
	// PendingRequestID is the team's pending limit-increase request for
	// this limit (trir_…), null when none; while one is pending no other
	// may be filed, so can_request_increase is false.
	PendingRequestID *string `json:"pending_request_id"`
}

// thresholdUsage is the usage from which a limit counts as near
// (⌈max × 80%⌉), in integers: float rounding must not let the snapshot
// and the request endpoints disagree about the same usage.
func thresholdUsage(max int) int { return (max*4 + 4) / 5 }

// nearLimit reports usage ≥ 80% of max: the point from which a team may
// ask for more (SPEC §2). A limit of 0 is always near.
func nearLimit(usage, max int) bool { return usage*5 >= max*4 }

func newLimitState(usage, max int, pending *string) limitState {
	ls := limitState{Usage: usage, MaxAllowed: max, ThresholdUsage: thresholdUsage(max), PendingRequestID: pending}
	if max > 0 {
		ls.UsageRatio = math.Round(float64(usage)/float64(max)*10000) / 10000
	} else {
		ls.UsageRatio = 1 // nothing allowed: as full as it gets
	}
	ls.IsAtLimit = usage >= max
	ls.IsNearLimit = nearLimit(usage, max)
	ls.CanRequestIncrease = ls.IsNearLimit && ls.PendingRequestID == nil
	return ls
}

type sendingAccountsLimit struct {
	ResourceType string `json:"resource_type"`
	limitState
	// Reserved is the hosted API's count of accounts being set up and
	// not yet counted in usage. smtpmux creates a provider in one step
	// under a per-team lock (providerLocks), so none ever are: always 0.
	Reserved int `json:"reserved"`
}

func newSendingAccountsLimit(usage, max int, pending *string) sendingAccountsLimit {
	return sendingAccountsLimit{ResourceType: store.LimitSendingAccounts, limitState: newLimitState(usage, max, pending)}
}

// providerLimits is GET /providers/limits.
func (s *Server) providerLimits(c *call) error {
	ps, err := s.st.Providers(c.team())
	if err != nil {
		return err
	}
	limit, err := s.providerLimit(c.team())
	if err != nil {
		return err
	}
	own := 0
	var managed *store.Provider
	for _, p := range ps {
		switch {
		case !p.Managed:
			own++
		case p.Type == store.TypeManagedSES && managed == nil:
			managed = p
		}
	}
	var fo *fanout
	if managed != nil {
		fo = s.fanOut(c, nil) // cluster mode: the other nodes' part of its usage
	}
	managedPending, err := s.pendingLimitRequestID(c.team(), store.LimitManagedSES)
	if err != nil {
		return err
	}
	peers, err := s.peerManagedCounts(c, fo)
	if err != nil {
		return err
	}
	shared, err := s.managedSESSnapshot(c.team(), managed, managedPending, peers)
	if err != nil {
		return err
	}
	accountsPending, err := s.pendingLimitRequestID(c.team(), store.LimitSendingAccounts)
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, map[string]any{
		"sending_accounts":  newSendingAccountsLimit(own, limit, accountsPending),
		"shared_amazon_ses": shared,
	})
	return nil
}
