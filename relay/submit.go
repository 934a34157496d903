package relay

import (
	"context"
	"fmt"
	"strings"

	"github.com/smtpmux/smtpmux/internal/crlf"
	"github.com/smtpmux/smtpmux/internal/ratelimit"
	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/store"
)

// Authenticate resolves a sending key or mailbox password presented over
// HTTP from client address remoteIP, exactly as SMTP AUTH does: the same
// minimum delay on failure and the same per-address failure limit, with
// one count per address for both (an *senderr.AuthLimitedError past it).
func (srv *Server) Authenticate(remoteIP, secret string) (*Credential, error) {
	return srv.checkAuth(remoteIP, secret)
}

// Limiter is the per-credential request limit shared by SMTP and HTTP.
func (srv *Server) Limiter() *ratelimit.Limiter { return srv.limiter }

// Submit accepts a message built by the HTTP Sending API: the same checks
// as an SMTP transaction (except the rate limit, which the caller counts
// per request), then the same durable enqueue. It returns the eml_ id once
// the message is on disk. body must be CRLF-terminated lines.
//
// The credential is named by its kind and ID (Credential.Kind and .ID, as
// Authenticate returned them for this request) and read again here, so
// that a revocation, suspension or scope change takes effect on the next
// message even within one batch request.
func (srv *Server) Submit(kind, id, from string, rcpts []string, body []byte) (string, error) {
	cred, err := srv.auth.Recheck(&Credential{Kind: kind, ID: id})
	if err != nil {
		return "", err // senderr.ErrBadCredential, or senderr.ErrAuthUnavailable (try later)
	}
	if len(body) == 0 {
		return "", senderr.ErrEmptyMessage
	}
	// The Sending API builds CRLF MIME; this makes sure of it, so no
	// HTTP-sent content carries a bare CR or LF to an upstream.
	body = crlf.Normalize(body)
	if from != "" && !validAddress(from) {
		return "", senderr.ErrBadAddress
	}
	seen := map[string]bool{}
	var uniq []string
	for _, r := range rcpts {
		if !validAddress(r) {
			return "", senderr.ErrBadAddress
		}
		if k := strings.ToLower(r); !seen[k] {
			seen[k] = true
			uniq = append(uniq, r)
		}
	}
	if len(uniq) == 0 {
		return "", senderr.ErrBadAddress
	}
	if cred.RequiredFrom != "" && (!asciiEqualFold(from, cred.RequiredFrom) || !headerFromIs(body, cred.RequiredFrom)) {
		return "", senderr.ErrSenderNotMailbox
	}
	addr, sup, err := srv.suppressedOf(cred.TeamID, uniq)
	if err != nil {
		return "", err
	}
	if addr != "" && srv.cfg.SuppressedAction != SuppressedAccept {
		srv.reject(cred, "suppressed")
		return "", &SuppressedError{Address: addr}
	}
	ok, err := srv.hasActiveProvider(cred)
	if err != nil {
		return "", err
	}
	if !ok {
		srv.reject(cred, "no_active_providers")
		return "", senderr.ErrNoActiveProviders
	}
	m := srv.newMessage(srv.newMessageID(), cred, "http", from, uniq, body, int64(len(body)))
	markSuppressed(m, sup)
	toSend := m.PendingCount()
	managed, team, err := srv.managedOnly(cred)
	if err != nil {
		return "", fmt.Errorf("%w: %w", senderr.ErrLimitsUnavailable, err)
	}
	if managed != nil && toSend > 0 {
		// One instant for the reservation and its record (m.CreatedAt).
		switch srv.acceptManaged(context.Background(), managed, team, toSend, toSend, m.CreatedAt) {
		case managedOverDaily:
			srv.reject(cred, "daily_limit_exceeded")
			return "", senderr.ErrDailyLimit
		case managedOverHourly:
			srv.reject(cred, "hourly_limit_exceeded")
			return "", senderr.ErrHourlyLimit
		}
		m.ManagedReserved, m.ManagedProviderID, m.ManagedReservedAt = toSend, managed.ID, m.CreatedAt
	}
	inline := body
	var sf *store.SpoolFile
	if len(body) > store.InlineLimit && toSend > 0 {
		// Large HTTP sends go to a spool file like large SMTP ones, so
		// they do not bloat the memory-mapped store.
		var err error
		sf, err = srv.store.CreateSpool(m.ID)
		if err == nil {
			if _, err = sf.Write(body); err == nil {
				err = sf.Finish()
			} else {
				sf.Abort()
			}
		}
		if err != nil {
			srv.releaseAccepted(m.ManagedProviderID, m.ManagedReserved, m.ManagedReservedAt)
			return "", err
		}
		m.Spooled, inline = true, nil
	}
	if err := srv.enqueue(m, inline); err != nil {
		srv.releaseAccepted(m.ManagedProviderID, m.ManagedReserved, m.ManagedReservedAt)
		if sf != nil {
			// Not stored, not acknowledged: the file is nobody's (on a
			// full disk it would hold the space until the next start).
			sf.Abort()
		}
		return "", err
	}
	return m.ID, nil
}
