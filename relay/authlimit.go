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
	ok, wait, giveBack := srv.authFails.Reserve(connslots.ClientKey(ip))
	if !ok {
		srv.metrics.limited("auth_failures")
		return nil, &AuthLimitedError{RetryAfter: max(wait, time.Second)}
	}
	cred, err := srv.auth.Check(secret)
	if errors.Is(err, ErrAuthUnavailable) {
		// The store could not answer: not the client's failure, so it
		// neither counts nor shows as one (the client hears "try later").
		giveBack()
		return nil, err
	}
	if err != nil {
		srv.metrics.authFailed()
		return nil, err
	}
	giveBack()
	return cred, nil
}
