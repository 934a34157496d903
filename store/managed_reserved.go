package store

import (
	"bytes"
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

// migrateManagedReserved is step 2 → 3, chunked (batchFn): queued
// messages after the cursor in the due index, up to limit, written before
// the reservation index, enter it. It writes only the index (a put of a
// value derived from the record), never the due entries it walks.
func migrateManagedReserved(tx *bolt.Tx, after []byte, limit int) (last []byte, n int, done bool, err error) {
	msgs := tx.Bucket(bMessages)
	c := tx.Bucket(bDue).Cursor()
	k, _ := seekAfter(c, after)
	for ; k != nil && n < limit; k, _ = c.Next() {
		last, n = k, n+1
		if len(k) <= 8 {
			continue
		}
		var m Message
		if err := getJSON(msgs, string(k[8:]), &m); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // an index entry without a record: nothing to count
			}
			return nil, 0, false, fmt.Errorf("message %s: %w", k[8:], err)
		}
		if err := syncManagedReserved(tx, &m, false); err != nil {
			return nil, 0, false, err
		}
	}
	return bytes.Clone(last), n, k == nil, nil
}

// countDue is the number of queue entries, for the progress log.
func countDue(tx *bolt.Tx) int { return keyCount(tx, bDue) }
