// Package state names the states a provider, a message and a delivery
// attempt can be in, as typed constants in one place.
//
// It is a leaf: it imports nothing, so store (which records the states),
// routing (which decides on them), relay and admin (which set and show
// them) can all import it without a cycle. The string values are wire
// names — stored in bbolt and shown by the API — and never change.
package state

import "strings"

// Provider is a sending account's status (SPEC §2).
type Provider string

// Provider statuses. Only an active provider is picked; error and pending
// are set by the relay (authentication failed, grant revoked) and cleared
// by an operator or a reconnect; inactive is set by the team.
const (
	ProviderActive   Provider = "active"
	ProviderInactive Provider = "inactive"
	ProviderError    Provider = "error"
	ProviderPending  Provider = "pending"
)

// Message is the public status of a message and of each of its
// recipients (SPEC §4).
type Message string

// Message and recipient statuses.
const (
	MessagePending  Message = "pending"
	MessageSent     Message = "sent"
	MessageFailed   Message = "failed"
	MessageRejected Message = "rejected"
	// MessageSuppressed is a recipient on the team's suppression list
	// accepted without sending ([bounces] suppressed_action = "accept"),
	// and a message all of whose recipients were.
	MessageSuppressed Message = "suppressed"
)

// Attempt is the outcome of one delivery attempt. An attempt is recorded
// as in progress before any network I/O and completed afterwards.
type Attempt string

// Attempt outcomes.
const (
	AttemptInProgress Attempt = "in_progress"
	AttemptSent       Attempt = "sent"
	AttemptPartial    Attempt = "partial" // some recipients refused
	AttemptDeferred   Attempt = "deferred"
	AttemptFailed     Attempt = "failed"
	AttemptRejected   Attempt = "rejected"
	AttemptInterrupt  Attempt = "interrupted" // the daemon stopped mid-attempt
)

// ProviderStatuses returns every provider status, in the order the API
// lists them (filters, GET /providers/stats).
func ProviderStatuses() []Provider {
	return []Provider{ProviderActive, ProviderInactive, ProviderError, ProviderPending}
}

// Join joins states with sep, for error texts that list the valid ones.
func Join[S ~string](xs []S, sep string) string {
	ss := make([]string, len(xs))
	for i, x := range xs {
		ss[i] = string(x)
	}
	return strings.Join(ss, sep)
}

// MessageStatuses returns every public message status, in the order the
// API lists them.
func MessageStatuses() []Message {
	return []Message{MessagePending, MessageSent, MessageFailed, MessageRejected, MessageSuppressed}
}
