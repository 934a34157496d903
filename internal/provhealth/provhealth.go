// Package provhealth holds what the delivery side tells the Management API
// about a provider: its breaker state (Snapshot, ProviderItem.health) and
// the verdict of a connection test (TestResult). relay produces both and
// admin renders them; a leaf both import keeps them typed without admin
// importing relay.
package provhealth

import "time"

// Snapshot is a provider's breaker state as the API shows it.
type Snapshot struct {
	// State is the breaker's: "closed" (in rotation), "open" (pulled) or
	// "half_open" (one probe attempt may go).
	State          string     `json:"state"`
	RecentFailures int        `json:"recent_failures"`
	PulledUntil    *time.Time `json:"pulled_until"`
	Reason         string     `json:"reason,omitempty"`
	// QuotaUse is each limited window's use and the cap in force now (for
	// a range, this hour's draw), keyed per_second … per_day, so that a
	// UI can draw used / cap without knowing how a range is drawn.
	QuotaUse map[string]QuotaUse `json:"quota_use,omitempty"`
}

// QuotaUse is one quota window's state: units taken in the current window
// (in flight and consumed) and the cap in force.
type QuotaUse struct {
	Used int `json:"used"`
	Cap  int `json:"cap"`
}

// Outcome is the verdict of a provider connection test.
type Outcome int

// Outcomes of a connection test. The zero value is not one, so a result
// nobody set is caught rather than read as a success.
const (
	// OK: connected (and authenticated, where the provider does).
	OK Outcome = iota + 1
	// Failed: the settings do not work; the API sets the provider's
	// status to error.
	Failed
	// Deferred: the answer was "not now" rather than "no" (the test ran
	// out of time, or an SMTP upstream answered its opening with a 4xx
	// such as too many connections). It says nothing about the settings,
	// so the provider keeps its status.
	Deferred
)

// TestResult is what a connection test found.
type TestResult struct {
	Outcome Outcome
	// Message says what the test proved or why it failed, in words fit to
	// show the team (and store as status_reason): never a secret, never
	// the raw error. Empty lets the API use its own default.
	Message string
}
