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
	ok, wait, giveBack := srv.authFails.Reserve(connslots.ClientKey(ip))
	if !ok {
		srv.metrics.limited("auth_failures")
		return nil, &senderr.AuthLimitedError{RetryAfter: max(wait, time.Second)}
	}
	cred, err := srv.auth.Check(secret)
	if errors.Is(err, senderr.ErrAuthUnavailable) {
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
