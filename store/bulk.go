package store

import bolt "go.etcd.io/bbolt"

// bulkChunk is how many items one bulk-load transaction writes.
const bulkChunk = 5000

// LoadHistory writes finished messages (State done, no body, no queue
// entry) in large transactions, with every index and counter a message
// has. It exists for benchmarks and the bench/cmd store builder, which need
// histories of millions of messages quickly; the product path is Enqueue
// then UpdateMessage.
func (s *Store) LoadHistory(ms []*Message) error {
	return inBulk(s, ms, func(tx *bolt.Tx, m *Message) error {
		m.State = StateDone
		if err := putJSON(tx.Bucket(bMessages), m.ID, m); err != nil {
			return err
		}
		if err := indexNewMessage(tx, m); err != nil {
			return err
		}
		return markFinished(tx, m)
	})
}

// LoadBodies stores body as the inline body of each message of ids, in
// large transactions, as LoadHistory writes records: for benchmarks that
// need bodies in a history (the body retention sweep's).
func (s *Store) LoadBodies(ids []string, body []byte) error {
	return inBulk(s, ids, func(tx *bolt.Tx, id string) error { return putBody(tx, id, body) })
}

// inBulk writes each item with put, bulkChunk items per transaction.
func inBulk[T any](s *Store, items []T, put func(*bolt.Tx, T) error) error {
	for len(items) > 0 {
		chunk := items[:min(len(items), bulkChunk)]
		items = items[len(chunk):]
		err := s.update(func(tx *bolt.Tx) error {
			for _, it := range chunk {
				if err := put(tx, it); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
