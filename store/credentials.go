package store

import (
	"errors"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Credential kinds.
const (
	CredKindKey             = "key"
	CredKindMailboxPassword = "mailbox_password"
)

// Credential is what a presented secret stands for, whichever kind it is:
// the relay authenticates SMTP and HTTP sends with sending keys and
// mailbox passwords alike, and needs one answer to "whose is it, where may
// its mail go, may it send now".
type Credential struct {
	Kind   string // CredKindKey or CredKindMailboxPassword
	ID     string // the key's or the password's ID
	TeamID string
	// KeyType is the key's type (KeyRoot or KeySending); empty for
	// mailbox passwords. Only sending keys may send.
	KeyType string
	// Scope is the key's send scope, or the mailbox's.
	Scope Scope
	// MailboxID and MailboxAddress are set for mailbox passwords; the
	// address is the only From such a send may use.
	MailboxID      string
	MailboxAddress string
	// Active is false for a revoked key, a revoked password, and a
	// password whose mailbox is suspended or gone. Inactive credentials
	// are still returned (not ErrNotFound) so that callers can tell a
	// revoked credential from a wrong one in their logs.
	Active bool
	// Expires is set when the secret presented was a key's previous
	// secret, kept by a rotation's grace period: it stops authenticating
	// then, and sessions it opened must stop sending.
	Expires *time.Time
}

// CredentialBySecret resolves a presented secret. The index is keyed by
// the hash, and the stored hash is compared in constant time anyway (as in
// KeyBySecret), so a lookup never short-circuits on secret bytes. An
// unknown secret is ErrNotFound.
func (s *Store) CredentialBySecret(secret string) (*Credential, error) {
	return s.CredentialByHash(HashSecret(secret))
}

// CredentialByHash is CredentialBySecret for a secret's hash
// (HashSecret): an open session keeps the hash, not the secret, and
// re-resolves it before each transaction, so that a rotation's grace
// period ends its sessions too.
func (s *Store) CredentialByHash(h []byte) (*Credential, error) {
	var c *Credential
	var match func([]byte) (bool, *time.Time)
	err := s.view(func(tx *bolt.Tx) error {
		ref := tx.Bucket(bCredHash).Get(h)
		if ref == nil {
			return ErrNotFound
		}
		var err error
		c, match, err = s.credentialTx(tx, string(ref))
		return err
	})
	if err != nil {
		return nil, err
	}
	ok, expires := match(h)
	if !ok {
		return nil, ErrNotFound
	}
	c.Expires = expires
	return c, nil
}

// CredentialByID re-reads a credential an open session authenticated
// earlier, so that revoking a key or password, suspending or deleting a
// mailbox takes effect on the session's next transaction. A credential
// that no longer exists is ErrNotFound.
func (s *Store) CredentialByID(kind, id string) (*Credential, error) {
	var ref string
	switch kind {
	case CredKindKey:
		ref = "key:" + id
	case CredKindMailboxPassword:
		ref = credRefPassword + id
	default:
		return nil, ErrNotFound
	}
	var c *Credential
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		c, _, err = s.credentialTx(tx, ref)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// credentialTx builds the Credential a cred_hash reference ("key:<id>" or
// "mbxpw:<id>") points at, and returns the comparison of a presented
// hash with the stored one(s) (a rotated key has two for a while).
func (s *Store) credentialTx(tx *bolt.Tx, ref string) (*Credential, func([]byte) (bool, *time.Time), error) {
	switch {
	case strings.HasPrefix(ref, "key:"):
		// Decoded through the cache (rawCache): read-only from here on.
		var k APIKey
		if err := decodeCached(tx.Bucket(bKeys), ref[len("key:"):], &s.keyRecs, &k); err != nil {
			return nil, nil, err
		}
		match := func(h []byte) (bool, *time.Time) { return k.matchHash(h, time.Now()) }
		return &Credential{
			Kind: CredKindKey, ID: k.ID, TeamID: k.TeamID, KeyType: k.Type,
			Scope: k.SendScope.clone(), Active: k.Active(),
		}, match, nil
	case strings.HasPrefix(ref, credRefPassword):
		var p MailboxPassword
		if err := decodeCached(tx.Bucket(bMailboxPasswords), ref[len(credRefPassword):], &s.pwRecs, &p); err != nil {
			return nil, nil, err
		}
		c := &Credential{Kind: CredKindMailboxPassword, ID: p.ID, TeamID: p.TeamID, MailboxID: p.MailboxID}
		match := func(h []byte) (bool, *time.Time) { return EqualHash(p.Hash, h), nil }
		var m Mailbox
		err := decodeCached(tx.Bucket(bMailboxes), p.MailboxID, &s.mbxRecs, &m)
		switch {
		case errors.Is(err, ErrNotFound):
			// Deleting a mailbox removes its passwords, so this is
			// an inconsistency; refuse rather than guess a scope.
			return c, match, nil
		case err != nil:
			return nil, nil, err
		case m.TeamID != p.TeamID:
			return c, match, nil
		}
		c.Scope, c.MailboxAddress = m.SendScope.clone(), m.Address
		c.Active = p.Active() && !m.Suspended
		return c, match, nil
	}
	return nil, nil, ErrNotFound
}

// decodeCached is getJSON through a rawCache.
func decodeCached[T any](b *bolt.Bucket, id string, c *rawCache[T], dst *T) error {
	raw := b.Get([]byte(id))
	if raw == nil {
		return ErrNotFound
	}
	return c.decode(id, raw, dst)
}
