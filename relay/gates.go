package relay

import (
	"context"
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// The seams through which cluster mode makes quotas cluster-wide
// (cluster/quota implements all three against etcd). Each is optional:
// left nil, the relay decides alone from its own counters, exactly as a
// single node always has. Set, it is asked on top of the local rule, so
// the local rule still holds and the cluster's can only refuse more.

// QuotaGate is a provider's quota across the cluster. The scheduler asks
// Check for every candidate whose local quota has room, and Take for the
// one picked, both under its pick lock, so neither may wait on the
// network: a gate that must fetch capacity says "not now" with a retry
// time. Done ends every successful Take.
type QuotaGate interface {
	// Check reports whether n units of provider id fit in every limited
	// window of l at now; if not, the earliest time worth looking again.
	Check(id string, l routing.Limits, n int, now time.Time) (bool, time.Time)
	// Take spends n units (false if they no longer fit).
	Take(id string, l routing.Limits, n int, now time.Time) bool
	// Done ends a Take made at takenAt; consumed reports whether the
	// upstream received the message (units not consumed go back).
	Done(id string, l routing.Limits, n int, takenAt time.Time, consumed bool, now time.Time)
}

// ManagedGate is the managed account's daily acceptance limit across the
// cluster: recipients reserved before the 250 on any node count.
type ManagedGate interface {
	// Accept reserves n recipients of managed provider id on the current
	// UTC day, whose limit is daily; false: the day is full. It may wait
	// briefly on the network (the client waits for its RCPT reply).
	Accept(ctx context.Context, id string, daily, n int) bool
	// Release gives back recipients accepted at acceptedAt whose message
	// was not queued.
	Release(id string, n int, acceptedAt time.Time)
}

// SendLimiter is the per-credential sends-per-minute limit shared by SMTP
// and HTTP (ratelimit.Limiter locally; cluster-wide in cluster mode).
type SendLimiter interface {
	Allow(key string) (bool, time.Duration)
}

// AllowSend counts one send of credential id against the per-credential
// limit: the configured SendLimit when set, else the local limiter.
func (srv *Server) AllowSend(id string) (bool, time.Duration) {
	if srv.cfg.SendLimit != nil {
		return srv.cfg.SendLimit.Allow(id)
	}
	return srv.limiter.Allow(id)
}

// acceptManaged reserves n recipients of a message that will then have
// msgRecipients on managed provider p: the local rule first (the hourly
// cap per message, this node's daily usage), then the cluster's daily
// count when a ManagedGate is set. A cluster refusal gives the local
// reservation back.
func (srv *Server) acceptManaged(ctx context.Context, p *store.Provider, team *store.Team, n, msgRecipients int, now time.Time) managedVerdict {
	h := srv.sched.health
	v := h.acceptManaged(p, team, n, msgRecipients, now)
	if v != managedOK || srv.cfg.ManagedGate == nil {
		return v
	}
	daily := 0
	if dl := h.limitsOf(p, team)[routing.Day]; dl != nil {
		daily = dl.Effective(p.ID, now)
	}
	if !srv.cfg.ManagedGate.Accept(ctx, p.ID, daily, n) {
		h.releaseManaged(p.ID, n, now)
		return managedOverDaily
	}
	return managedOK
}

// releaseAccepted gives back recipients of a transaction that did not
// end in a queued message: locally, and to the cluster's daily count.
func (srv *Server) releaseAccepted(providerID string, n int, acceptedAt time.Time) {
	srv.sched.health.releaseManaged(providerID, n, acceptedAt)
	if srv.cfg.ManagedGate != nil && n > 0 {
		srv.cfg.ManagedGate.Release(providerID, n, acceptedAt)
	}
}

// limitsOf is limits under the health lock.
func (h *health) limitsOf(p *store.Provider, team *store.Team) routing.Limits {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.limits(p, team)
}
