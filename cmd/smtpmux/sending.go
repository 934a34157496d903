package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/relay"
)

// relaySender is the relay as the HTTP Sending API uses it: the same
// credential check, rate limit and durable enqueue as SMTP.
type relaySender struct{ srv *relay.Server }

func (s relaySender) Authenticate(remoteIP, secret string) (*admin.SendCredential, error) {
	c, err := s.srv.Authenticate(remoteIP, secret)
	var limited *relay.AuthLimitedError
	if errors.As(err, &limited) {
		return nil, &admin.SendAuthLimitedError{RetryAfter: limited.RetryAfter}
	}
	if errors.Is(err, relay.ErrBadCredential) {
		return nil, admin.ErrSendUnauthorized
	}
	if err != nil {
		return nil, err
	}
	return &admin.SendCredential{ID: c.ID, TeamID: c.TeamID, RequiredFrom: c.RequiredFrom, Handle: c}, nil
}

func (s relaySender) Submit(c *admin.SendCredential, from string, rcpts []string, body []byte) (string, error) {
	id, err := s.srv.Submit(c.Handle.(*relay.Credential), from, rcpts, body)
	switch {
	case errors.Is(err, relay.ErrBadCredential):
		return "", admin.ErrSendUnauthorized
	case errors.Is(err, relay.ErrNoActiveProviders):
		return "", admin.ErrSendNoActiveProviders
	case errors.Is(err, relay.ErrSenderNotMailbox):
		return "", admin.ErrSendSenderNotAllowed
	case errors.Is(err, relay.ErrBadAddress), errors.Is(err, relay.ErrEmptyMessage):
		return "", admin.ErrSendInvalidMessage
	case errors.Is(err, relay.ErrDailyLimit):
		return "", admin.ErrSendDailyLimit
	case errors.Is(err, relay.ErrHourlyLimit):
		return "", admin.ErrSendHourlyLimit
	case errors.Is(err, relay.ErrAuthUnavailable), errors.Is(err, relay.ErrLimitsUnavailable):
		return "", fmt.Errorf("%w: %w", admin.ErrSendUnavailable, err)
	}
	return id, err
}

func (s relaySender) Allow(id string) (bool, time.Duration) { return s.srv.Limiter().Allow(id) }

// managedUsage is the relay's count of a managed account's usage as the
// Management API reports it (the same figures acceptance enforces).
func managedUsage(sched *relay.Scheduler) func(string) (admin.ManagedCounts, bool) {
	return func(providerID string) (admin.ManagedCounts, bool) {
		u, ok := sched.ManagedUsage(providerID)
		return admin.ManagedCounts(u), ok
	}
}
