package relay

import (
	"errors"
	"fmt"
	"time"

	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/store"
)

// Credential is an authenticated sender: whose mail it is and where it may go.
type Credential struct {
	TeamID string
	// Kind and ID name the sending key or mailbox password.
	Kind      string
	ID        string
	MailboxID string
	// RequiredFrom, when set, is the only envelope/header sender allowed
	// (a mailbox password sends as its mailbox).
	RequiredFrom string
	Scope        store.Scope
	// secretHash is the hash (store.HashSecret) of the secret presented,
	// never the secret: Recheck resolves it again, so a key's previous
	// secret stops working in open sessions when its rotation grace
	// period ends, as it does for new ones.
	secretHash []byte
}

// credError maps a store lookup error: not found is a bad credential,
// anything else leaves the question open.
func credError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return senderr.ErrBadCredential
	}
	return fmt.Errorf("%w: %w", senderr.ErrAuthUnavailable, err)
}

// Authenticator resolves presented secrets (sending keys and mailbox
// passwords) to credentials.
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
	if errors.Is(err, senderr.ErrAuthUnavailable) {
		return nil, err
	}
	if err != nil {
		if d := a.MinDelay - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		return nil, senderr.ErrBadCredential
	}
	return c, nil
}

// Recheck re-reads a credential so that revoking a key or password,
// suspending a mailbox, or changing its send scope takes effect on an open
// session's next transaction. It returns the current credential.
func (a *Authenticator) Recheck(c *Credential) (*Credential, error) {
	var sc *store.Credential
	var err error
	if len(c.secretHash) > 0 {
		sc, err = a.Store.CredentialByHash(c.secretHash)
		if err == nil && (sc.Kind != c.Kind || sc.ID != c.ID) {
			err = store.ErrNotFound // the secret now names something else: never in practice
		}
	} else {
		sc, err = a.Store.CredentialByID(c.Kind, c.ID)
	}
	if err != nil {
		return nil, credError(err)
	}
	if !canSend(sc) {
		return nil, senderr.ErrBadCredential
	}
	fresh := fromStore(sc)
	fresh.secretHash = c.secretHash
	return fresh, nil
}

func (a *Authenticator) lookup(secret string) (*Credential, error) {
	if len(secret) < 16 || len(secret) > 256 {
		return nil, senderr.ErrBadCredential
	}
	h := store.HashSecret(secret)
	sc, err := a.Store.CredentialByHash(h)
	if err != nil {
		return nil, credError(err)
	}
	if !canSend(sc) {
		return nil, senderr.ErrBadCredential
	}
	c := fromStore(sc)
	c.secretHash = h
	return c, nil
}

func fromStore(sc *store.Credential) *Credential {
	return &Credential{TeamID: sc.TeamID, Kind: sc.Kind, ID: sc.ID, MailboxID: sc.MailboxID,
		RequiredFrom: sc.MailboxAddress, Scope: sc.Scope}
}

// canSend: only active sending keys and active mailbox passwords send;
// root keys are for the Management API.
func canSend(c *store.Credential) bool {
	if !c.Active {
		return false
	}
	return c.Kind == store.CredKindMailboxPassword || c.KeyType == store.KeySending
}
