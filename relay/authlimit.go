package relay

import (
	"errors"
	"fmt"
	"time"

	"github.com/smtpmux/smtpmux/internal/connslots"
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

// checkAuth resolves a secret presented from client address ip. The
// attempt is counted against ip's allowance before the secret is checked
// and given back if it was good: counting after the check (which takes
// auth_fail_delay when it fails) let every attempt made in parallel pass
// a limit none of them had counted yet, so 60 parallel guesses from one
// address were all checked against a limit of 20.
func (srv *Server) checkAuth(ip, secret string) (*Credential, error) {
	ok, wait, done := srv.ReserveAuth(ip)
	if !ok {
		return nil, &AuthLimitedError{RetryAfter: wait}
	}
	cred, err := srv.auth.Check(secret)
	// A store that could not answer is not the client's failure, so it
	// neither counts nor shows as one (the client hears "try later").
	done(err != nil && !errors.Is(err, ErrAuthUnavailable))
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
