package routing

import (
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// Scope mirrors a credential's send scope (SPEC §1).
type Scope struct {
	Type        string // "all", "providers", "group"
	ProviderIDs []string
	GroupIDs    []string
}

// Candidate is one provider of the team as routing sees it at pick time.
type Candidate struct {
	ID      string
	GroupID string
	Status  state.Provider
	Managed bool // the team's managed account
	// Weight is the provider's percentage; nil means unset (counts as 100).
	Weight *int
	// Pulled is set while the breaker keeps the provider out of rotation.
	Pulled bool
	// OverQuota is set when some quota window has no headroom.
	OverQuota bool
	// AuthFailed is set when this provider already failed authentication
	// for this message.
	AuthFailed bool
	// Avoid is set when this provider just failed this message with a
	// connection or quota error: the message tries others first.
	Avoid bool
	// NotBefore, for a pulled or over-quota candidate, is when it may be
	// eligible again.
	NotBefore time.Time
}

// Exclusion reasons, stable strings shown in routing explanations.
const (
	ReasonOutOfScope = "out_of_scope"
	ReasonInactive   = "inactive"
	ReasonError      = "status_error"
	ReasonPending    = "status_pending"
	ReasonPulled     = "pulled_by_breaker"
	ReasonOverQuota  = "over_quota"
	ReasonZeroWeight = "zero_weight"
	ReasonAuthFailed = "auth_failed_for_message"
	ReasonAvoid      = "failed_for_message_recently"
)

// Exclusion records why a candidate was not eligible.
type Exclusion struct {
	ProviderID string `json:"provider_id"`
	Reason     string `json:"reason"`
}

// Weighted is an eligible provider with the weight used in the draw.
type Weighted struct {
	ProviderID string `json:"provider_id"`
	Weight     int    `json:"weight"`
}

// Explanation is the record of one routing decision (SPEC §4, message log).
type Explanation struct {
	ScopeType string      `json:"scope_type"`
	InScope   []string    `json:"in_scope"`
	Excluded  []Exclusion `json:"excluded,omitempty"`
	Eligible  []Weighted  `json:"eligible,omitempty"`
	// Draw is the random number in [0, total weight) that chose Picked.
	Draw   int    `json:"draw"`
	Total  int    `json:"total_weight"`
	Picked string `json:"picked,omitempty"`
	// Waiting is true when nothing is eligible now only because of quota
	// or the breaker: the message waits instead of failing, until RetryAt.
	Waiting bool      `json:"waiting,omitempty"`
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// DefaultWeight is the weight of a provider whose percentage is unset.
const DefaultWeight = 100

// InScope reports whether c may carry mail of a credential with scope s.
func InScope(s Scope, c Candidate) bool {
	switch s.Type {
	case "providers":
		return contains(s.ProviderIDs, c.ID)
	case "group":
		return c.GroupID != "" && contains(s.GroupIDs, c.GroupID)
	default: // "all" and unset
		return true
	}
}

// exclusionReason returns why c is not eligible, or "" if it is.
func exclusionReason(c Candidate) string {
	switch {
	case c.Status == state.ProviderError:
		return ReasonError
	case c.Status == state.ProviderPending:
		return ReasonPending
	case c.Status != state.ProviderActive:
		return ReasonInactive
	case c.AuthFailed:
		return ReasonAuthFailed
	case c.Avoid:
		return ReasonAvoid
	case c.Weight != nil && *c.Weight <= 0:
		return ReasonZeroWeight
	case c.Pulled:
		return ReasonPulled
	case c.OverQuota:
		return ReasonOverQuota
	}
	return ""
}

// Pick chooses a provider for one attempt. draw maps a total weight n > 0 to
// a uniformly random integer in [0, n); it is a parameter so tests can fix
// it. The returned Explanation says what happened; Picked is "" when no
// candidate is eligible, and Waiting tells whether waiting can help.
func Pick(scope Scope, cands []Candidate, draw func(n int) int) Explanation {
	// Deterministic order so that a fixed draw always picks the same.
	sorted := SortInScope(scope, cands)
	return Expand(scope.Type, SetOf(sorted), Choose(sorted, draw))
}

// HasActive reports whether any provider in scope is active and could ever
// be picked (weight > 0), ignoring quota and breaker state. The SMTP
// session answers no_active_providers when it is false.
func HasActive(scope Scope, cands []Candidate) bool {
	for _, c := range cands {
		if InScope(scope, c) && c.Status == state.ProviderActive && (c.Weight == nil || *c.Weight > 0) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
