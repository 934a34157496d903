package main

import (
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/admin/sendapi"
	"github.com/smtpmux/smtpmux/relay"
)

// relaySender is the relay as the HTTP Sending API uses it: the same
// credential check, rate limit and durable enqueue as SMTP. Errors pass
// through as they are: relay and admin share internal/senderr's.
type relaySender struct{ srv *relay.Server }

func (s relaySender) Authenticate(remoteIP, secret string) (*sendapi.Credential, error) {
	c, err := s.srv.Authenticate(remoteIP, secret)
	if err != nil {
		return nil, err
	}
	return &sendapi.Credential{Kind: c.Kind, ID: c.ID, TeamID: c.TeamID, RequiredFrom: c.RequiredFrom}, nil
}

func (s relaySender) Submit(c *sendapi.Credential, from string, rcpts []string, body []byte) (string, error) {
	return s.srv.Submit(c.Kind, c.ID, from, rcpts, body)
}

func (s relaySender) Allow(id string) (bool, time.Duration) { return s.srv.AllowSend(id) }

// managedUsage is the relay's count of a managed account's usage as the
// Management API reports it (the same figures acceptance enforces).
func managedUsage(sched *relay.Scheduler) func(string) (admin.ManagedCounts, bool) {
	return func(providerID string) (admin.ManagedCounts, bool) {
		u, ok := sched.ManagedUsage(providerID)
		return admin.ManagedCounts(u), ok
	}
}
