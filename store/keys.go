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
	return s.update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bCredHash)
		if v := idx.Get(k.Hash); v != nil && string(v) != "key:"+k.ID {
			return ErrConflict
		}
		if err := idx.Put(k.Hash, []byte("key:"+k.ID)); err != nil {
			return err
		}
		return putTeamRecord(tx, kindKeys, k)
	})
}

// Key returns a key by ID.
func (s *Store) Key(id string) (*APIKey, error) {
	var k APIKey
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bKeys), id, &k) }); err != nil {
		return nil, err
	}
	return &k, nil
}

// KeyBySecret finds the key a presented secret belongs to. The index is
// keyed by hash, and the stored hash is compared in constant time anyway.
// Revoked keys are returned too; callers check Active.
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
	if !EqualHash(k.Hash, h) {
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
	err := s.update(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindKeys, teamID, id, 0, fn)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
