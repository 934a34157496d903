package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Webhook deliveries: one record per (event, webhook), queued durably when
// the event is emitted, so that a crash between the event and the POST
// loses nothing.
var (
	bWebhookDeliveries = []byte("webhook_deliveries")         // delivery id → WebhookDelivery
	bWebhookDelByHook  = []byte("webhook_deliveries_by_hook") // webhook id || delivery id → nil
	bWebhookDue        = []byte("webhook_due")                // be64(nanos) || delivery id → webhook id
)

// ID prefixes of events and their deliveries.
const (
	PrefixEvent    = "evt_"
	PrefixDelivery = "wdl_"
)

// Delivery statuses.
const (
	DeliveryPending   = "pending" // waiting for its next attempt (indexed in webhook_due)
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed" // retries exhausted, or the webhook is gone
)

// DeliveryAttempt is one POST of a delivery.
type DeliveryAttempt struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

// WebhookDelivery is one event on its way to one webhook.
type WebhookDelivery struct {
	ID        string `json:"id"`
	WebhookID string `json:"webhook_id"`
	TeamID    string `json:"team_id"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// Event is the event envelope without the per-attempt fields; the
	// dispatcher adds those and signs the result at each attempt.
	Event         json.RawMessage   `json:"event"`
	Status        string            `json:"status"`
	NextAttemptAt time.Time         `json:"next_attempt_at"`
	Attempts      []DeliveryAttempt `json:"attempts,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	CompletedAt   *time.Time        `json:"completed_at,omitempty"`
}

func webhookDueKey(at time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(at.UnixNano()))
	return append(k, id...)
}

func putDelivery(tx *bolt.Tx, d *WebhookDelivery) error {
	if err := putJSON(tx.Bucket(bWebhookDeliveries), d.ID, d); err != nil {
		return err
	}
	if err := tx.Bucket(bWebhookDelByHook).Put([]byte(d.WebhookID+d.ID), nil); err != nil {
		return err
	}
	if d.Status == DeliveryPending {
		return tx.Bucket(bWebhookDue).Put(webhookDueKey(d.NextAttemptAt, d.ID), []byte(d.WebhookID))
	}
	return nil
}

// EnqueueWebhookDeliveries stores new pending deliveries in one durable
// transaction.
func (s *Store) EnqueueWebhookDeliveries(ds []*WebhookDelivery) error {
	return s.update(func(tx *bolt.Tx) error {
		for _, d := range ds {
			if err := putDelivery(tx, d); err != nil {
				return err
			}
		}
		return nil
	})
}

// WebhookDelivery returns one delivery.
func (s *Store) WebhookDelivery(id string) (*WebhookDelivery, error) {
	var d WebhookDelivery
	if err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bWebhookDeliveries), id, &d) }); err != nil {
		return nil, err
	}
	return &d, nil
}

// UpdateWebhookDelivery applies fn to a stored delivery and keeps the due
// index consistent with its Status and NextAttemptAt. fn may run more than
// once and must be deterministic.
func (s *Store) UpdateWebhookDelivery(id string, fn func(*WebhookDelivery) error) (*WebhookDelivery, error) {
	var out WebhookDelivery
	err := s.update(func(tx *bolt.Tx) error {
		var d WebhookDelivery
		if err := getJSON(tx.Bucket(bWebhookDeliveries), id, &d); err != nil {
			return err
		}
		if d.Status == DeliveryPending {
			if err := tx.Bucket(bWebhookDue).Delete(webhookDueKey(d.NextAttemptAt, d.ID)); err != nil {
				return err
			}
		}
		if err := fn(&d); err != nil {
			return err
		}
		d.ID = id
		out = d
		return putDelivery(tx, &d)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DueWebhookDeliveries returns up to limit pending deliveries due at or
// before now, oldest due first, skipping those skip reports true for (it
// gets the delivery and webhook IDs, so a dispatcher can pass over an
// endpoint that is busy); and the due time of the first later delivery
// (zero if none), for the dispatcher's timer.
func (s *Store) DueWebhookDeliveries(now time.Time, limit int, skip func(id, webhookID string) bool) (ids []string, next time.Time, err error) {
	end := uint64(now.UnixNano())
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bWebhookDue).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			at := binary.BigEndian.Uint64(k[:8])
			if at > end {
				next = time.Unix(0, int64(at))
				return nil
			}
			id := string(k[8:])
			if skip != nil && skip(id, string(v)) {
				continue
			}
			if len(ids) >= limit {
				return nil
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids, next, err
}

// WebhookDeliveries lists a webhook's deliveries newest first: up to limit
// of them whose ID sorts below before ("" for the newest), optionally only
// those with status. more reports whether older matching ones exist.
func (s *Store) WebhookDeliveries(webhookID, before, status string, limit int) (out []*WebhookDelivery, more bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		idx, recs := tx.Bucket(bWebhookDelByHook).Cursor(), tx.Bucket(bWebhookDeliveries)
		prefix := []byte(webhookID)
		var k []byte
		if before == "" {
			// The first key past every key of this webhook.
			if k, _ = idx.Seek(append(bytes.Clone(prefix), 0xff)); k == nil {
				k, _ = idx.Last()
			} else {
				k, _ = idx.Prev()
			}
		} else if k, _ = idx.Seek([]byte(webhookID + before)); k == nil {
			k, _ = idx.Last()
		} else {
			k, _ = idx.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = idx.Prev() {
			var d WebhookDelivery
			if err := getJSON(recs, string(k[len(prefix):]), &d); err != nil {
				continue // swept between the index and the record: skip
			}
			if status != "" && d.Status != status {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			out = append(out, &d)
		}
		return nil
	})
	return out, more, err
}

// SweepWebhookDeliveries deletes up to limit deliveries created before
// cutoff, whatever their status (retries end after a day; the cutoff is a
// week), and reports how many went and whether more remain. Delivery IDs
// start with their creation time, so the walk starts at the oldest and
// stops at the cutoff.
func (s *Store) SweepWebhookDeliveries(cutoff time.Time, limit int) (n int, more bool, err error) {
	floor := []byte(idFloor(PrefixDelivery, cutoff))
	var ids []string
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bWebhookDeliveries).Cursor()
		for k, v := c.Seek([]byte(PrefixDelivery)); k != nil && bytes.Compare(k, floor) < 0; k, v = c.Next() {
			var d WebhookDelivery
			if jsonUnmarshal(v, &d) == nil && !d.CreatedAt.Before(cutoff) {
				continue
			}
			if len(ids) == limit {
				more = true
				return nil
			}
			ids = append(ids, string(k))
		}
		return nil
	})
	if err != nil || len(ids) == 0 {
		return 0, false, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bWebhookDeliveries)
		for _, id := range ids {
			var d WebhookDelivery
			if getJSON(recs, id, &d) == nil {
				if err := tx.Bucket(bWebhookDelByHook).Delete([]byte(d.WebhookID + id)); err != nil {
					return err
				}
				if d.Status == DeliveryPending {
					if err := tx.Bucket(bWebhookDue).Delete(webhookDueKey(d.NextAttemptAt, id)); err != nil {
						return err
					}
				}
			}
			if err := recs.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return len(ids), more, nil
}
