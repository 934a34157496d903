package relay

import (
	"errors"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// Credential is an authenticated sender: whose mail it is and where it may go.
type Credential struct {
	TeamID string
	// ID is the sending key's ID (or, later, the mailbox password's).
	ID        string
	MailboxID string
	// RequiredFrom, when set, is the only envelope/header sender allowed.
	RequiredFrom string
	Scope        store.Scope
}

// ErrBadCredential is every authentication failure; callers never learn
// which part was wrong.
var ErrBadCredential = errors.New("bad credential")

// Authenticator resolves presented secrets to credentials.
type Authenticator struct {
	Store *store.Store
	// MinDelay is the fixed minimum time a failed check takes, so that
	// failures are slow to brute-force and indistinguishable by timing.
	MinDelay time.Duration
}

// Check resolves a secret. Failures take at least MinDelay.
func (a *Authenticator) Check(secret string) (*Credential, error) {
	start := time.Now()
	c, err := a.lookup(secret)
	if err != nil {
		if d := a.MinDelay - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		return nil, ErrBadCredential
	}
	return c, nil
}

// Recheck re-reads a credential by ID so that a revocation takes effect on
// an open session's next transaction.
func (a *Authenticator) Recheck(c *Credential) error {
	k, err := a.Store.Key(c.ID)
	if err != nil || !k.Active() || k.Type != store.KeySending {
		return ErrBadCredential
	}
	return nil
}

func (a *Authenticator) lookup(secret string) (*Credential, error) {
	if len(secret) < 16 || len(secret) > 256 {
		return nil, ErrBadCredential
	}
	k, err := a.Store.KeyBySecret(secret)
	if err != nil || !k.Active() || k.Type != store.KeySending {
		return nil, ErrBadCredential
	}
	return &Credential{TeamID: k.TeamID, ID: k.ID, Scope: k.SendScope}, nil
}
