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
	return s.updateRecord(func(tx *bolt.Tx) error {
		if tx.Bucket(bWebhooks).Get([]byte(w.ID)) != nil {
			return ErrConflict
		}
		n, err := countTeam(tx, kindWebhooks, w.TeamID)
		if err != nil {
			return err
		}
		if max > 0 && n >= max {
			return ErrLimit
		}
		return createTeamRecord(tx, kindWebhooks, w)
	})
}

// WebhookByID returns a webhook of any team (the dispatcher's lookup).
func (s *Store) WebhookByID(id string) (*Webhook, error) {
	return s.Webhook(anyTeam, id)
}

// Webhook returns a webhook of teamID; another team's is ErrNotFound.
func (s *Store) Webhook(teamID, id string) (*Webhook, error) {
	var w *Webhook
	err := s.view(func(tx *bolt.Tx) (err error) {
		w, err = getTeamRecord[Webhook](tx, kindWebhooks, teamID, id)
		return err
	})
	return w, err
}

// Webhooks lists a team's webhooks in creation order.
func (s *Store) Webhooks(teamID string) ([]*Webhook, error) {
	var out []*Webhook
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listTeam[Webhook](tx, kindWebhooks, teamID)
		return err
	})
	return out, err
}

// UpdateWebhook applies fn to the team's stored webhook and saves it with a
// new version. ifVersion > 0 makes the write conditional (If-Match). fn may
// run more than once and must be deterministic.
func (s *Store) UpdateWebhook(teamID, id string, ifVersion int64, fn func(*Webhook) error) (*Webhook, error) {
	var out *Webhook
	err := s.updateRecord(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindWebhooks, teamID, id, ifVersion, fn)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteWebhook removes a team's webhook. Its deliveries stay until the
// retention sweep: the dispatcher drops the pending ones when it finds
// their webhook gone, which keeps this a constant-time write however many
// deliveries the webhook has.
func (s *Store) DeleteWebhook(teamID, id string, ifVersion int64) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		_, err := deleteTeamRecord[Webhook](tx, kindWebhooks, teamID, id, ifVersion)
		return err
	})
}
