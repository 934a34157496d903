package relay

import (
	"errors"
	"time"

	"github.com/smtpmux/smtpmux/internal/connslots"
	"github.com/smtpmux/smtpmux/internal/senderr"
)

// checkAuth resolves a secret presented from client address ip. The
// attempt is counted against ip's allowance before the secret is checked
// and given back if it was good: a failed check takes auth_fail_delay, so
// counting after it would let every attempt made in parallel meanwhile
// pass a limit none of them had counted yet.
func (srv *Server) checkAuth(ip, secret string) (*Credential, error) {
	ok, wait, done := srv.ReserveAuth(ip)
	if !ok {
		return nil, &senderr.AuthLimitedError{RetryAfter: wait}
	}
	cred, err := srv.auth.Check(secret)
	// A store that could not answer is not the client's failure, so it
	// neither counts nor shows as one (the client hears "try later").
	done(err != nil && !errors.Is(err, senderr.ErrAuthUnavailable))
	return cred, err
}

// ReserveAuth counts one authentication attempt from client address ip
// against the per-address failure limit (smtp.auth_fail_limit a minute)
// before its secret is checked, as checkAuth does; the HTTP API uses it
// for the secrets it checks itself (the operator token, root keys), so
// guesses at those share the one allowance with SMTP AUTH and the
// Sending API. When !ok the address is past its limit, nothing was
// counted and the secret must not be checked; retry after wait.
// Otherwise done ends the attempt: a failed one stays counted, any other
// gives its count back.
func (srv *Server) ReserveAuth(ip string) (ok bool, wait time.Duration, done func(failed bool)) {
	ok, wait, giveBack := srv.authFails.Reserve(connslots.ClientKey(ip))
	if !ok {
		srv.metrics.limited("auth_failures")
		return false, max(wait, time.Second), func(bool) {}
	}
	return true, 0, func(failed bool) {
		if failed {
			srv.metrics.authFailed()
			return
		}
		giveBack()
	}
}
