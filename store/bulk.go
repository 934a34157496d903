package store

import bolt "go.etcd.io/bbolt"

// bulkChunk is how many messages one LoadHistory transaction writes.
const bulkChunk = 5000

// LoadHistory writes finished messages (State done, no body, no queue
// entry) in large transactions, with every index and counter a message
// has. It exists for benchmarks and the bench/cmd store builder, which need
// histories of millions of messages quickly; the product path is Enqueue
// then UpdateMessage.
func (s *Store) LoadHistory(ms []*Message) error {
	for len(ms) > 0 {
		n := min(len(ms), bulkChunk)
		chunk := ms[:n]
		ms = ms[n:]
		err := s.update(func(tx *bolt.Tx) error {
			for _, m := range chunk {
				m.State = StateDone
				if err := putJSON(tx.Bucket(bMessages), m.ID, m); err != nil {
					return err
				}
				if err := indexNewMessage(tx, m); err != nil {
					return err
				}
				if err := markFinished(tx, m); err != nil {
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

// LoadBodies stores body as the inline body of each message of ids, in
// large transactions, as LoadHistory writes records: for benchmarks that
// need bodies in a history (the body retention sweep's).
func (s *Store) LoadBodies(ids []string, body []byte) error {
	for len(ids) > 0 {
		n := min(len(ids), bulkChunk)
		chunk := ids[:n]
		ids = ids[n:]
		err := s.update(func(tx *bolt.Tx) error {
			for _, id := range chunk {
				if err := putBody(tx, id, body); err != nil {
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
