package store

import (
	"errors"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bMailboxes = []byte("mailboxes")
	// bMailboxAddr makes addresses unique per team:
	// team id || 0x00 || lowercased address → mailbox id.
	bMailboxAddr = []byte("mailbox_addr")
	// bMailboxPasswords holds MailboxPassword records keyed by their ID;
	// their hashes are indexed in cred_hash as "mbxpw:<id>".
	bMailboxPasswords = []byte("mailbox_passwords")
)

// credRefPassword prefixes a mailbox password's entry in cred_hash (keys
// use "key:").
const credRefPassword = "mbxpw:"

// Mailbox is one sender address of a team (SPEC §1). Mail authenticated
// by one of its passwords must use Address as From and is routed within
// SendScope.
type Mailbox struct {
	ID          string `json:"id"`
	TeamID      string `json:"team_id"`
	Address     string `json:"address"` // lowercased; unique per team
	DisplayName string `json:"display_name,omitempty"`
	SendScope   Scope  `json:"send_scope"`
	Suspended   bool   `json:"suspended"`
	// FailureReports opts the mailbox's mail into RFC 3464 failure
	// reports to its envelope sender (see APIKey.FailureReports).
	FailureReports bool      `json:"failure_reports,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// Version increases with every write; it is the ETag.
	Version int64 `json:"version"`
}

// MailboxPassword is one named, individually revocable credential of a
// mailbox. Like an API key, only the hash of the secret is stored.
type MailboxPassword struct {
	ID         string     `json:"id"`
	MailboxID  string     `json:"mailbox_id"`
	TeamID     string     `json:"team_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"` // first characters of the secret, for recognising it
	Hash       []byte     `json:"hash"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Active reports whether the password itself is unrevoked; whether it may
// send also depends on its mailbox (see Credential.Active).
func (p *MailboxPassword) Active() bool { return p.RevokedAt == nil }

// NormalizeAddress is the stored and compared form of a mailbox address.
// Local parts are case-sensitive in theory only; treating them as such
// would let "Bob@x" and "bob@x" be two mailboxes that receive the same mail.
func NormalizeAddress(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

func addrKey(teamID, address string) []byte {
	return []byte(teamID + "\x00" + NormalizeAddress(address))
}

// CreateMailbox stores a new mailbox with version 1, normalising its
// address. An address the team already uses is ErrConflict.
func (s *Store) CreateMailbox(m *Mailbox) error {
	m.Address = NormalizeAddress(m.Address)
	return s.updateRecord(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bMailboxAddr)
		if tx.Bucket(bMailboxes).Get([]byte(m.ID)) != nil {
			return ErrConflict
		}
		ak := addrKey(m.TeamID, m.Address)
		if v := idx.Get(ak); v != nil && string(v) != m.ID {
			return ErrConflict
		}
		if err := idx.Put(ak, []byte(m.ID)); err != nil {
			return err
		}
		return createTeamRecord(tx, kindMailboxes, m)
	})
}

// Mailbox returns a mailbox regardless of team (for credential checks).
func (s *Store) Mailbox(id string) (*Mailbox, error) {
	return s.TeamMailbox(anyTeam, id)
}

// TeamMailbox returns a mailbox only if it belongs to teamID.
func (s *Store) TeamMailbox(teamID, id string) (*Mailbox, error) {
	var m *Mailbox
	err := s.view(func(tx *bolt.Tx) (err error) {
		m, err = getTeamRecord[Mailbox](tx, kindMailboxes, teamID, id)
		return err
	})
	return m, err
}

// MailboxByAddress finds the team's mailbox with that address (compared
// case-insensitively).
func (s *Store) MailboxByAddress(teamID, address string) (*Mailbox, error) {
	var m Mailbox
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bMailboxAddr).Get(addrKey(teamID, address))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bMailboxes), string(id), &m)
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// Mailboxes lists a team's mailboxes in creation order.
func (s *Store) Mailboxes(teamID string) ([]*Mailbox, error) {
	var out []*Mailbox
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listTeam[Mailbox](tx, kindMailboxes, teamID)
		return err
	})
	return out, err
}

// UpdateMailbox applies fn to the team's stored mailbox and saves it with
// a new version. ifVersion > 0 makes the write conditional (If-Match). If
// fn changes the address, the uniqueness index follows (ErrConflict when
// the new address is taken). fn may run more than once.
func (s *Store) UpdateMailbox(teamID, id string, ifVersion int64, fn func(*Mailbox) error) (*Mailbox, error) {
	var out *Mailbox
	err := s.updateRecord(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindMailboxes, teamID, id, ifVersion, func(m *Mailbox) error {
			oldAddr := m.Address
			if err := fn(m); err != nil {
				return err
			}
			m.Address = NormalizeAddress(m.Address)
			if m.Address == oldAddr {
				return nil
			}
			idx, nk := tx.Bucket(bMailboxAddr), addrKey(teamID, m.Address)
			if v := idx.Get(nk); v != nil && string(v) != id {
				return ErrConflict
			}
			if err := idx.Delete(addrKey(teamID, oldAddr)); err != nil {
				return err
			}
			return idx.Put(nk, []byte(id))
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteMailbox removes a team's mailbox together with its passwords and
// their credential index entries, in one transaction: from the commit on,
// none of its passwords authenticates any more.
func (s *Store) DeleteMailbox(teamID, id string, ifVersion int64) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		m, err := deleteTeamRecord[Mailbox](tx, kindMailboxes, teamID, id, ifVersion)
		if err != nil {
			return err
		}
		pws, err := passwordsOf(tx, teamID, id)
		if err != nil {
			return err
		}
		pb, idx := tx.Bucket(bMailboxPasswords), tx.Bucket(bCredHash)
		for _, p := range pws {
			if v := idx.Get(p.Hash); string(v) == credRefPassword+p.ID {
				if err := idx.Delete(p.Hash); err != nil {
					return err
				}
			}
			if err := pb.Delete([]byte(p.ID)); err != nil {
				return err
			}
			if err := tx.Bucket(bMailboxPwByMailbox).Delete(passwordIndexKey(p)); err != nil {
				return err
			}
		}
		return tx.Bucket(bMailboxAddr).Delete(addrKey(teamID, m.Address))
	})
}

// passwordsOf lists the passwords of teamID's mailbox in creation order,
// reading only that mailbox's entries of the password index.
func passwordsOf(tx *bolt.Tx, teamID, mailboxID string) ([]*MailboxPassword, error) {
	var out []*MailboxPassword
	b := tx.Bucket(bMailboxPasswords)
	prefix := passwordIndexPrefix(teamID, mailboxID)
	err := forTeamKeys(tx.Bucket(bMailboxPwByMailbox), prefix, func(id []byte) error {
		var p MailboxPassword
		if err := getJSON(b, string(id), &p); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil // an index entry without its record: skip
			}
			return err
		}
		if p.TeamID == teamID && p.MailboxID == mailboxID {
			out = append(out, &p)
		}
		return nil
	})
	return out, err
}

// passwordIndexPrefix starts the index keys of one mailbox's passwords.
func passwordIndexPrefix(teamID, mailboxID string) []byte {
	return []byte(teamID + "\x00" + mailboxID + "\x00")
}

// passwordIndexKey is p's key in the password index.
func passwordIndexKey(p *MailboxPassword) []byte {
	return append(passwordIndexPrefix(p.TeamID, p.MailboxID), p.ID...)
}

// CreateMailboxPassword stores a new password of an existing mailbox of
// p.TeamID and indexes its hash. The caller generated the secret and set
// Hash; the secret itself never reaches the store. A mailbox deleted
// meanwhile is ErrNotFound, so no password can outlive its mailbox.
func (s *Store) CreateMailboxPassword(p *MailboxPassword) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		if _, err := getTeamRecord[Mailbox](tx, kindMailboxes, p.TeamID, p.MailboxID); err != nil {
			return err
		}
		idx := tx.Bucket(bCredHash)
		if v := idx.Get(p.Hash); v != nil && string(v) != credRefPassword+p.ID {
			return ErrConflict
		}
		if err := idx.Put(p.Hash, []byte(credRefPassword+p.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bMailboxPwByMailbox).Put(passwordIndexKey(p), nil); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bMailboxPasswords), p.ID, p)
	})
}

// MailboxPasswords lists the passwords of one of the team's mailboxes;
// a mailbox of another team is ErrNotFound.
func (s *Store) MailboxPasswords(teamID, mailboxID string) ([]*MailboxPassword, error) {
	var out []*MailboxPassword
	err := s.view(func(tx *bolt.Tx) error {
		if _, err := getTeamRecord[Mailbox](tx, kindMailboxes, teamID, mailboxID); err != nil {
			return err
		}
		var err error
		out, err = passwordsOf(tx, teamID, mailboxID)
		return err
	})
	return out, err
}

// MailboxPassword returns one password regardless of team (for credential
// checks).
func (s *Store) MailboxPassword(id string) (*MailboxPassword, error) {
	var p MailboxPassword
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bMailboxPasswords), id, &p) }); err != nil {
		return nil, err
	}
	return &p, nil
}

// RevokeMailboxPassword revokes a password of the team's mailbox at the
// given time. Revoking twice keeps the first time. The hash stays indexed
// so that a lookup finds the password and reports it inactive, exactly as
// revoked keys behave.
func (s *Store) RevokeMailboxPassword(teamID, mailboxID, id string, at time.Time) (*MailboxPassword, error) {
	var out MailboxPassword
	err := s.updateRecord(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMailboxPasswords)
		var p MailboxPassword
		if err := getJSON(b, id, &p); err != nil {
			return err
		}
		if p.TeamID != teamID || p.MailboxID != mailboxID {
			return ErrNotFound
		}
		if p.RevokedAt == nil {
			t := at
			p.RevokedAt = &t
		}
		out = p
		return putJSON(b, id, &p)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
