package store

import (
	"errors"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bWebhooks holds Webhook records keyed by ID.
var bWebhooks = []byte("webhooks")

// PrefixWebhook is the public ID prefix of webhook subscriptions (the
// hosted product's "twhk_").
const PrefixWebhook = "twhk_"

// ErrLimit means a per-team count limit was reached.
var ErrLimit = errors.New("limit reached")

// Webhook is a team's subscription: events of the listed types are POSTed,
// signed with the secret, to URL. The secret is stored sealed (it must be
// replayed to sign, so a hash would not do) and never leaves the daemon
// except once, in the answer that created or rotated it.
type Webhook struct {
	ID         string   `json:"id"`
	TeamID     string   `json:"team_id"`
	Name       string   `json:"name,omitempty"`
	URL        string   `json:"url"`
	EventTypes []string `json:"event_types"`
	Enabled    bool     `json:"enabled"`
	// Failing is set when a delivery exhausted its retries and cleared by
	// the next success, or by re-enabling the webhook. It is a signal for
	// the team; events keep being queued.
	Failing      bool   `json:"failing,omitempty"`
	SecretSealed []byte `json:"secret_sealed"`
	// SecretPrefix is the start of the secret, to recognise it in lists.
	SecretPrefix    string     `json:"secret_prefix"`
	SecretRotatedAt *time.Time `json:"secret_rotated_at,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	// Version increases with every write; it is the ETag.
	Version int64 `json:"version"`
}

// Wants reports whether the webhook is enabled and subscribed to typ.
func (w *Webhook) Wants(typ string) bool { return w.Enabled && slices.Contains(w.EventTypes, typ) }

// CreateWebhook stores a new webhook with version 1, unless its team already
// has max webhooks (ErrLimit); count and insert share one transaction, so
// concurrent creates cannot overshoot.
func (s *Store) CreateWebhook(w *Webhook, max int) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWebhooks)
		if b.Get([]byte(w.ID)) != nil {
			return ErrConflict
		}
		n := 0
		err := forEachJSON(b, func() any { return new(Webhook) }, func(v any) {
			if v.(*Webhook).TeamID == w.TeamID {
				n++
			}
		})
		if err != nil {
			return err
		}
		if max > 0 && n >= max {
			return ErrLimit
		}
		w.Version = 1
		return putJSON(b, w.ID, w)
	})
}

// WebhookByID returns a webhook of any team (the dispatcher's lookup).
func (s *Store) WebhookByID(id string) (*Webhook, error) {
	var w Webhook
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bWebhooks), id, &w) }); err != nil {
		return nil, err
	}
	return &w, nil
}

// Webhook returns a webhook of teamID; another team's is ErrNotFound.
func (s *Store) Webhook(teamID, id string) (*Webhook, error) {
	w, err := s.WebhookByID(id)
	if err != nil {
		return nil, err
	}
	if w.TeamID != teamID {
		return nil, ErrNotFound
	}
	return w, nil
}

// Webhooks lists a team's webhooks in creation order. The bucket holds a
// few records per team at most, so a full walk is cheaper than an index.
func (s *Store) Webhooks(teamID string) ([]*Webhook, error) {
	var out []*Webhook
	err := s.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx.Bucket(bWebhooks), func() any { return new(Webhook) }, func(v any) {
			if w := v.(*Webhook); w.TeamID == teamID {
				out = append(out, w)
			}
		})
	})
	return out, err
}

// UpdateWebhook applies fn to the team's stored webhook and saves it with a
// new version. ifVersion > 0 makes the write conditional (If-Match). fn may
// run more than once and must be deterministic.
func (s *Store) UpdateWebhook(teamID, id string, ifVersion int64, fn func(*Webhook) error) (*Webhook, error) {
	var out Webhook
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWebhooks)
		var w Webhook
		if err := getJSON(b, id, &w); err != nil {
			return err
		}
		if w.TeamID != teamID {
			return ErrNotFound
		}
		if ifVersion > 0 && w.Version != ifVersion {
			return ErrConflict
		}
		if err := fn(&w); err != nil {
			return err
		}
		w.ID, w.TeamID = id, teamID // identity is not fn's to change
		w.Version++
		out = w
		return putJSON(b, id, &w)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteWebhook removes a team's webhook. Its deliveries stay until the
// retention sweep: the dispatcher drops the pending ones when it finds
// their webhook gone, which keeps this a constant-time write however many
// deliveries the webhook has.
func (s *Store) DeleteWebhook(teamID, id string, ifVersion int64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bWebhooks)
		var w Webhook
		if err := getJSON(b, id, &w); err != nil {
			return err
		}
		if w.TeamID != teamID {
			return ErrNotFound
		}
		if ifVersion > 0 && w.Version != ifVersion {
			return ErrConflict
		}
		return b.Delete([]byte(id))
	})
}
