package store

import (
	"testing"

	bolt "go.etcd.io/bbolt"
)

// asLegacyFinished turns every record journaled for the flusher
// (history_flush.go) and not flushed yet into what an earlier version
// left of a finished message: indexed and counted in the main file and on
// the mover's list. Tests of the mover, the main file's sweep and the
// schema migrations start from such files.
func asLegacyFinished(t *testing.T, s *Store) {
	t.Helper()
	err := s.update(func(tx *bolt.Tx) error {
		j, msgs := tx.Bucket(bHistJournal), tx.Bucket(bMessages)
		var ids [][]byte
		j.ForEach(func(k, v []byte) error {
			if len(v) == 1 && v[0] == journalFinished {
				ids = append(ids, append([]byte(nil), k...))
			}
			return nil
		})
		for _, id := range ids {
			var m Message
			if err := getJSON(msgs, string(id), &m); err != nil {
				return err
			}
			if err := indexNewMessage(tx, &m); err != nil {
				return err
			}
			if err := markFinished(tx, &m); err != nil {
				return err
			}
			if err := j.Delete(id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
