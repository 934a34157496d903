package main

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// rewindToSchema5 turns a built store into the file a schema-5 binary
// left: without the history indexes and counters (msg_by_team,
// msg_by_filter, msg_counts) and at version 5, so that the next Open runs
// the 5 → 6 step over every message (issue 18, chunked migrations). The
// teams-by-name index of step 7 stays; its step only adds keys again.
func rewindToSchema5(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"msg_by_team", "msg_by_filter", "msg_counts"} {
			if err := tx.DeleteBucket([]byte(name)); err != nil && err != bolt.ErrBucketNotFound {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], 5)
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), v[:])
	})
}
