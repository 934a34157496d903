// Package event is the one event type smtpmux reports (SPEC §8): the relay
// emits message and provider events, admin emits clicks and limit-request
// decisions, and admin/webhook delivers all of them. It is a leaf both
// sides import, so neither has to copy the other's type field by field
// and admin still needs nothing of relay.
package event

import "time"

// Types of events (SPEC §8). All but Test may be subscribed to.
const (
	Delivered = "message.delivered"
	Bounced   = "message.bounced"  // an upstream permanently refused recipients
	Rejected  = "message.rejected" // the message finally failed (retries exhausted, uncertain)
	Delayed   = "message.delivery_delayed"
	Clicked   = "message.clicked"
	// Complained: a recipient reported the message as unwanted (an RFC
	// 5965 ARF report to the VERP return path).
	Complained            = "message.complained"
	ProviderStatusChanged = "provider.status_changed"
	LimitRequestDecided   = "limit_request.decided"
	// ManagedAccountHeld: the team's managed account left rotation for
	// its bounce or complaint rate until the operator releases it.
	ManagedAccountHeld = "team.managed_account_held"
	// DeliverabilityWarning: a provider's bounce or complaint rate over
	// some window crossed up into warning or at risk (once per crossing).
	DeliverabilityWarning = "provider.deliverability_warning"
	// Test is the synthetic event POST /webhooks/{id}/test sends. It goes
	// to that one webhook only, so it is not subscribable.
	Test = "smtpmux.test"
)

// Event is something a team may want to hear about, emitted once the
// result it reports is durable. Each type uses the fields it needs:
// message events MessageID, ProviderID, Recipients, Code, Reply and
// Reason; provider.status_changed ProviderID, Status and Reason;
// message.clicked MessageID, Recipients (the clicking recipient) and URL;
// types without dedicated fields (limit_request.decided, the test event)
// put theirs in Extra.
type Event struct {
	Type       string
	TeamID     string
	MessageID  string
	ProviderID string
	Recipients []string
	Code       int // the upstream's SMTP (or HTTP) code; 0 when there was none
	Reply      string
	Reason     string
	Status     string // provider.status_changed: the new status
	URL        string // message.clicked: the original link
	At         time.Time
	// Extra is merged into the payload's data object; it must marshal to
	// JSON.
	Extra map[string]any
}
