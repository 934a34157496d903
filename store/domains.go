package store

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// bDomains holds Domain records keyed by ID.
	bDomains = []byte("domains")
	// bDomainNames indexes them by team and name ("<team>/<domain>" → ID),
	// which makes a domain unique per team and lets the shaper find the
	// From domain's key with one lookup per attempt.
	bDomainNames = []byte("domain_names")
)

// PrefixDomain is the public ID prefix of sending domains.
const PrefixDomain = "dom_"

// Domain statuses (SPEC §6). Only verified domains sign mail.
const (
	DomainPending  = "pending"  // records not (yet) seen, or DNS did not answer
	DomainVerified = "verified" // ownership TXT and DKIM key found as published
	DomainFailed   = "failed"   // DNS answered and a required record is missing or wrong
)

// Domain is a team's sending domain with its DKIM key. The private key is
// sealed (see Sealer) and never leaves the daemon; everything else is what
// the team needs to publish and what the last DNS check found.
type Domain struct {
	ID     string `json:"id"`
	TeamID string `json:"team_id"`
	// Domain is lower case, without a trailing dot.
	Domain string `json:"domain"`
	// Selector names the DKIM key record <selector>._domainkey.<domain>.
	Selector string `json:"selector"`
	// Algorithm is "rsa" or "ed25519".
	Algorithm string `json:"algorithm"`
	// VerificationToken is published at _smtpmux.<domain> to prove
	// ownership; it is not a secret (anyone can read DNS).
	VerificationToken string `json:"verification_token"`
	// DKIMPublicTXT is the full TXT value of the DKIM key record.
	DKIMPublicTXT    string `json:"dkim_public_txt"`
	PrivateKeySealed []byte `json:"private_key_sealed"`

	Status string `json:"status"`
	// LastCheck is the last verification result as JSON (dnscheck.Result),
	// kept opaque so this package need not know its shape.
	LastCheck     json.RawMessage `json:"last_check,omitempty"`
	LastCheckedAt *time.Time      `json:"last_checked_at,omitempty"`
	VerifiedAt    *time.Time      `json:"verified_at,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	// Version increases with every write; it is the ETag and lets the
	// shaper's key cache notice a changed record.
	Version int64 `json:"version"`
}

// NormalizeDomain lower-cases a domain name and drops surrounding space and
// a trailing dot, the form Domain.Domain and the name index use: DNS names
// compare case-insensitively.
func NormalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

func domainNameKey(teamID, domain string) []byte {
	return []byte(teamID + "/" + NormalizeDomain(domain))
}

// CreateDomain stores a new domain with version 1. ErrConflict means the
// team already has a domain of that name (or the ID exists); ErrLimit that
// it already has max domains (max <= 0: no limit). The checks and the
// insert share one transaction, so concurrent creates cannot both win.
func (s *Store) CreateDomain(d *Domain, max int) error {
	d.Domain = NormalizeDomain(d.Domain)
	return s.updateRecord(func(tx *bolt.Tx) error {
		b, idx := tx.Bucket(bDomains), tx.Bucket(bDomainNames)
		nk := domainNameKey(d.TeamID, d.Domain)
		if b.Get([]byte(d.ID)) != nil || idx.Get(nk) != nil {
			return ErrConflict
		}
		if max > 0 {
			// The name index is keyed by team first: count the team's
			// entries with a prefix scan instead of decoding records.
			n, prefix := 0, []byte(d.TeamID+"/")
			c := idx.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			if n >= max {
				return ErrLimit
			}
		}
		if err := idx.Put(nk, []byte(d.ID)); err != nil {
			return err
		}
		return createTeamRecord(tx, kindDomains, d)
	})
}

// Domain returns a domain of teamID; another team's is ErrNotFound.
func (s *Store) Domain(teamID, id string) (*Domain, error) {
	var d *Domain
	err := s.view(func(tx *bolt.Tx) (err error) {
		d, err = getTeamRecord[Domain](tx, kindDomains, teamID, id)
		return err
	})
	return d, err
}

// DomainByName returns teamID's domain called name (any case, trailing
// dot or not), whatever its status, or ErrNotFound.
func (s *Store) DomainByName(teamID, name string) (*Domain, error) {
	var d Domain
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bDomainNames).Get(domainNameKey(teamID, name))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bDomains), string(id), &d)
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// Domains lists a team's domains in creation order; teamID "" lists every
// team's (the background re-check).
func (s *Store) Domains(teamID string) ([]*Domain, error) {
	var out []*Domain
	err := s.view(func(tx *bolt.Tx) (err error) {
		if teamID == "" {
			out, err = listAll[Domain](tx, kindDomains)
		} else {
			out, err = listTeam[Domain](tx, kindDomains, teamID)
		}
		return err
	})
	return out, err
}

// UpdateDomain applies fn to the team's stored domain and saves it with a
// new version. ifVersion > 0 makes the write conditional (If-Match). fn
// may run more than once and must be deterministic; it cannot rename the
// domain or move it to another team.
func (s *Store) UpdateDomain(teamID, id string, ifVersion int64, fn func(*Domain) error) (*Domain, error) {
	var out *Domain
	err := s.updateRecord(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindDomains, teamID, id, ifVersion, func(d *Domain) error {
			name := d.Domain
			err := fn(d)
			d.Domain = name // the name index depends on it
			return err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteDomain removes a team's domain and its name index entry. Mail from
// it is no longer signed from the next attempt on.
func (s *Store) DeleteDomain(teamID, id string, ifVersion int64) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		d, err := deleteTeamRecord[Domain](tx, kindDomains, teamID, id, ifVersion)
		if err != nil {
			return err
		}
		return tx.Bucket(bDomainNames).Delete(domainNameKey(teamID, d.Domain))
	})
}
