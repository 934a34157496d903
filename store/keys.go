package store

import (
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Key types.
const (
	KeyRoot    = "root"
	KeySending = "sending"
)

// Scope is a credential's send scope (SPEC §1): which providers its mail may
// go through. Type is "all", "providers" or "group".
type Scope struct {
	Type              string   `json:"type"`
	ProviderPublicIDs []string `json:"provider_public_ids,omitempty"`
	GroupPublicIDs    []string `json:"group_public_ids,omitempty"`
}

// APIKey is a root (management) or sending key. Only the hash of the secret
// is stored.
type APIKey struct {
	ID          string     `json:"id"`
	TeamID      string     `json:"team_id"`
	Name        string     `json:"name"`
	Type        string     `json:"type"`
	Prefix      string     `json:"prefix"` // first characters of the secret, for recognising it
	Hash        []byte     `json:"hash"`
	Permissions []string   `json:"permissions,omitempty"`
	SendScope   Scope      `json:"send_scope"`
	CreatedAt   time.Time  `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	// RotatedAt is the last rotation (RotateKey).
	RotatedAt *time.Time `json:"rotated_at,omitempty"`
	// PrevHash is the hash of the secret the last rotation replaced. It
	// keeps authenticating until PrevExpiresAt, so that clients can be
	// moved to the new secret without an outage; the cred_hash index
	// points at the key from both hashes until the sweeper (or the next
	// rotation) drops the old one.
	PrevHash      []byte     `json:"prev_hash,omitempty"`
	PrevExpiresAt *time.Time `json:"prev_expires_at,omitempty"`
	// FailureReports opts the key's mail into RFC 3464 failure reports
	// to its envelope sender (relay/failreport.go). Off by default: a
	// report is mail the team sends, through its own providers.
	FailureReports bool `json:"failure_reports,omitempty"`
}

// InGrace reports whether the previous secret still authenticates at now.
func (k *APIKey) InGrace(now time.Time) bool {
	return len(k.PrevHash) > 0 && k.PrevExpiresAt != nil && now.Before(*k.PrevExpiresAt)
}

// matchHash reports whether h is the hash of the key's current secret or
// of its previous one within the grace period; expires is that period's
// end when it was the previous one (nil for the current secret). Both
// hashes are compared, each in constant time, so the time taken does not
// tell which one matched.
func (k *APIKey) matchHash(h []byte, now time.Time) (ok bool, expires *time.Time) {
	cur := EqualHash(k.Hash, h)
	prev := len(k.PrevHash) > 0 && EqualHash(k.PrevHash, h)
	switch {
	case cur:
		return true, nil
	case prev && k.InGrace(now):
		e := *k.PrevExpiresAt
		return true, &e
	}
	return false, nil
}

// Active reports whether the key may still be used.
func (k *APIKey) Active() bool { return k.RevokedAt == nil }

// Allows reports whether the key's permissions include perm, honouring the
// wildcards "*" and "resource.*".
func (k *APIKey) Allows(perm string) bool {
	for _, p := range k.Permissions {
		if p == "*" || p == perm {
			return true
		}
		if strings.HasSuffix(p, ".*") && strings.HasPrefix(perm, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}

// CreateKey stores a new key and its hash index. The caller generated the
// secret and set Hash; the secret itself never reaches the store.
func (s *Store) CreateKey(k *APIKey) error {
	return s.updateRecord(func(tx *bolt.Tx) error { return putKey(tx, k) })
}

// putKey stores k and indexes its secret's hash (ErrConflict if another
// credential holds it).
func putKey(tx *bolt.Tx, k *APIKey) error {
	idx := tx.Bucket(bCredHash)
	if v := idx.Get(k.Hash); v != nil && string(v) != "key:"+k.ID {
		return ErrConflict
	}
	if err := idx.Put(k.Hash, []byte("key:"+k.ID)); err != nil {
		return err
	}
	return putTeamRecord(tx, kindKeys, k)
}

// Key returns a key by ID.
func (s *Store) Key(id string) (*APIKey, error) {
	var k APIKey
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bKeys), id, &k) }); err != nil {
		return nil, err
	}
	return &k, nil
}

// KeyBySecret finds the key a presented secret belongs to: its current
// secret, or the one a rotation replaced while its grace period lasts.
// The index is keyed by hash, and the stored hashes are compared in
// constant time anyway. Revoked keys are returned too; callers check
// Active.
func (s *Store) KeyBySecret(secret string) (*APIKey, error) {
	h := HashSecret(secret)
	var k APIKey
	err := s.view(func(tx *bolt.Tx) error {
		ref := tx.Bucket(bCredHash).Get(h)
		if ref == nil || !strings.HasPrefix(string(ref), "key:") {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bKeys), string(ref[4:]), &k)
	})
	if err != nil {
		return nil, err
	}
	if ok, _ := k.matchHash(h, time.Now()); !ok {
		return nil, ErrNotFound
	}
	return &k, nil
}

// Keys lists a team's keys in creation order.
func (s *Store) Keys(teamID string) ([]*APIKey, error) {
	var out []*APIKey
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listTeam[APIKey](tx, kindKeys, teamID)
		return err
	})
	return out, err
}

// UpdateKey applies fn to the stored key of the team and saves it.
func (s *Store) UpdateKey(teamID, id string, fn func(*APIKey) error) (*APIKey, error) {
	var out *APIKey
	err := s.updateRecord(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindKeys, teamID, id, 0, fn)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RotateKey gives the team's key a new secret hash (and its clear
// prefix). With grace > 0 the current secret keeps authenticating until
// now+grace; with 0 it stops at once. A secret kept from an earlier
// rotation is dropped now: only the latest previous secret is honoured.
// A revoked key is ErrConflict: rotating cannot bring it back.
func (s *Store) RotateKey(teamID, id string, newHash []byte, prefix string, now time.Time, grace time.Duration) (*APIKey, error) {
	var out APIKey
	err := s.updateRecord(func(tx *bolt.Tx) error {
		b, idx := tx.Bucket(bKeys), tx.Bucket(bCredHash)
		var k APIKey
		if err := getJSON(b, id, &k); err != nil {
			return err
		}
		if k.TeamID != teamID {
			return ErrNotFound
		}
		if !k.Active() {
			return ErrConflict
		}
		ref := []byte("key:" + k.ID)
		if v := idx.Get(newHash); v != nil {
			return ErrConflict // a 256-bit collision: never in practice
		}
		if err := dropHashRef(idx, k.PrevHash, ref); err != nil {
			return err
		}
		k.PrevHash, k.PrevExpiresAt = nil, nil
		if grace > 0 {
			exp := now.Add(grace)
			k.PrevHash, k.PrevExpiresAt = k.Hash, &exp
		} else if err := dropHashRef(idx, k.Hash, ref); err != nil {
			return err
		}
		if err := idx.Put(newHash, ref); err != nil {
			return err
		}
		k.Hash, k.Prefix, k.RotatedAt = newHash, prefix, &now
		out = k
		return putJSON(b, id, &k)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// dropHashRef deletes a cred_hash entry if it still points at ref.
func dropHashRef(idx *bolt.Bucket, h, ref []byte) error {
	if len(h) == 0 || string(idx.Get(h)) != string(ref) {
		return nil
	}
	return idx.Delete(h)
}

// SweepRotatedKeys forgets previous secrets whose grace period ended by
// now: the hash leaves the key and the cred_hash index. Lookups already
// refuse them; this keeps the index to the secrets that can still
// authenticate. It returns how many were dropped.
func (s *Store) SweepRotatedKeys(now time.Time) (int, error) {
	var expired []string
	err := s.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx.Bucket(bKeys), func(k *APIKey) {
			if len(k.PrevHash) > 0 && !k.InGrace(now) {
				expired = append(expired, k.ID)
			}
		})
	})
	if err != nil || len(expired) == 0 {
		return 0, err
	}
	n := 0
	err = s.updateRecord(func(tx *bolt.Tx) error {
		n = 0
		b, idx := tx.Bucket(bKeys), tx.Bucket(bCredHash)
		for _, id := range expired {
			var k APIKey
			if err := getJSON(b, id, &k); err != nil {
				continue // deleted meanwhile
			}
			if len(k.PrevHash) == 0 || k.InGrace(now) {
				continue // rotated again meanwhile
			}
			if err := dropHashRef(idx, k.PrevHash, []byte("key:"+k.ID)); err != nil {
				return err
			}
			k.PrevHash, k.PrevExpiresAt = nil, nil
			if err := putJSON(b, id, &k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
