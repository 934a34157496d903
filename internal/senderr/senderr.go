// Package senderr is the one set of reasons the relay refuses a credential
// or a message, shared by relay (which returns them from SMTP AUTH and from
// Server.Authenticate and Server.Submit) and admin (whose HTTP Sending API
// turns each into its answer). Being a leaf both import, it spares cmd a
// hand-written mapping from one side's errors to the other's, and admin
// still imports nothing of relay.
package senderr

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrBadCredential is every authentication failure (unknown, revoked
	// or suspended key or mailbox password, or a root key); callers never
	// learn which part was wrong.
	ErrBadCredential = errors.New("bad credential")
	// ErrAuthUnavailable is a credential check that could not be made:
	// the store failed to answer. It is not a failure of the client's
	// (SMTP 454 4.7.0, HTTP 503: try again later), and does not count as
	// one: a good key must not be refused for good, nor an address
	// blocked, because a read failed.
	ErrAuthUnavailable = errors.New("credential check unavailable")

	// ErrNoActiveProviders: no provider in the credential's send scope is
	// active, so the message could not go anywhere; nothing was queued.
	ErrNoActiveProviders = errors.New("no_active_providers")
	// ErrSenderNotMailbox: a mailbox password sends only as its mailbox.
	ErrSenderNotMailbox = errors.New("sender must be the mailbox address")
	// ErrBadAddress: an envelope address is malformed, or there is no
	// recipient.
	ErrBadAddress = errors.New("malformed address")
	// ErrEmptyMessage: the message has no bytes.
	ErrEmptyMessage = errors.New("empty message")
	// ErrDailyLimit: the managed account, the only provider in scope, has
	// no room left today (HTTP 429 daily_limit_exceeded).
	ErrDailyLimit = errors.New("daily_limit_exceeded")
	// ErrHourlyLimit: the managed account, the only provider in scope,
	// allows fewer recipients an hour than the message has, so it could
	// never go out (HTTP 422; SMTP refuses the extra recipients with 452).
	ErrHourlyLimit = errors.New("hourly_limit_exceeded")
	// ErrLimitsUnavailable: the team's limits could not be read (a store
	// error); nothing was queued, the client retries later.
	ErrLimitsUnavailable = errors.New("team limits unavailable")
	// ErrSuppressed: a recipient is on the team's suppression list
	// (SPEC §13); nothing was queued. SMTP refuses such a recipient at
	// RCPT with 550 5.1.1, HTTP with 422 naming the recipient.
	ErrSuppressed = errors.New("recipient_suppressed")
)

// AuthLimitedError is the answer to an authentication attempt from a
// client address that has used up its failed attempts for the window
// (smtp.auth_fail_limit a minute, SMTP AUTH and the HTTP Sending API
// together). The secret was not checked.
type AuthLimitedError struct {
	// RetryAfter is how long until the address may try again.
	RetryAfter time.Duration
}

func (e *AuthLimitedError) Error() string {
	return fmt.Sprintf("too many failed authentications from this address; retry in %s", e.RetryAfter.Round(time.Second))
}
