package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bManagedReserved indexes the queued messages that hold recipients
// reserved on the managed account's daily limit at acceptance (SPEC §2),
// so that a restart can count them again without reading every queued
// message: msg id → be64 accepted-at unix nanos || be32 recipients ||
// provider id. An entry lives exactly while its message is queued with
// ManagedReserved > 0; the first attempt's claim hands the reservation to
// the quota counter and removes it.
var bManagedReserved = []byte("managed_reserved")

// ManagedReservation is one index entry.
type ManagedReservation struct {
	MessageID, ProviderID string
	AcceptedAt            time.Time
	Recipients            int
}

func holdsReservation(m *Message) bool {
	return m.State == StateQueued && m.ManagedReserved > 0 && m.ManagedProviderID != ""
}

// syncManagedReserved puts or deletes m's entry after a write (was:
// whether it held a reservation before).
// Nothing is read or written for the many messages that hold none.
func syncManagedReserved(tx *bolt.Tx, m *Message, was bool) error {
	b := func() *bolt.Bucket { return tx.Bucket(bManagedReserved) }
	if holdsReservation(m) {
		v := make([]byte, 12, 12+len(m.ManagedProviderID))
		binary.BigEndian.PutUint64(v, uint64(m.ReservedAt().UnixNano()))
		binary.BigEndian.PutUint32(v[8:], uint32(m.ManagedReserved))
		return b().Put([]byte(m.ID), append(v, m.ManagedProviderID...))
	}
	if was {
		return b().Delete([]byte(m.ID))
	}
	return nil
}

// ManagedReservations returns every entry of the index.
func (s *Store) ManagedReservations() ([]ManagedReservation, error) {
	var out []ManagedReservation
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bManagedReserved).ForEach(func(k, v []byte) error {
			if len(v) <= 12 {
				return fmt.Errorf("managed reservation of %s: %d-byte value", k, len(v))
			}
			out = append(out, ManagedReservation{MessageID: string(k), ProviderID: string(v[12:]),
				AcceptedAt: time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(),
				Recipients: int(binary.BigEndian.Uint32(v[8:]))})
			return nil
		})
	})
	return out, err
}

// migrateManagedReserved is step 2 → 3: queued messages written before the
// index enter it.
func migrateManagedReserved(tx *bolt.Tx) error {
	msgs := tx.Bucket(bMessages)
	return tx.Bucket(bDue).ForEach(func(k, _ []byte) error {
		if len(k) <= 8 {
			return nil
		}
		var m Message
		if err := getJSON(msgs, string(k[8:]), &m); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil // an index entry without a record: nothing to count
			}
			return fmt.Errorf("message %s: %w", k[8:], err)
		}
		return syncManagedReserved(tx, &m, false)
	})
}
