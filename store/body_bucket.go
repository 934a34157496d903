package store

import bolt "go.etcd.io/bbolt"

// bodyBucketMin is the size from which an inline body is stored in a
// bucket of its own (bodies/<id>, one value under bodyKey) instead of as a
// value of the bodies bucket.
//
// bbolt never splits a leaf of four keys or fewer, so a leaf of large
// bodies holds up to four of them, and every commit that adds or deletes
// one rewrites the leaf with the others: at 100 KiB per message each body
// was written about twice, and each rewrite read its neighbours through
// the memory map (RSS spikes of 10–25 MB, bench/RESULTS.md session 9). A
// body in its own bucket is the only value of its leaf: its pages are
// written once, by the commit that adds it, and freed without being read
// by the one that deletes it; the bodies bucket's leaves hold only the
// 16-byte bucket headers. Below the limit the extra bucket costs more than
// it saves (2 KiB bodies pack many to a page).
const bodyBucketMin = 8 << 10

// bodyKey is the key of the body in its own bucket.
var bodyKey = []byte("b")

// putBody stores message id's inline body in tx; body must stay unchanged
// until tx commits (bbolt keeps the slice).
func putBody(tx *bolt.Tx, id string, body []byte) error {
	b := tx.Bucket(bBodies)
	if len(body) < bodyBucketMin {
		return b.Put([]byte(id), body)
	}
	own, err := b.CreateBucket([]byte(id))
	if err != nil {
		return err
	}
	return own.Put(bodyKey, body)
}

// getBody is message id's inline body in tx, either layout, nil if none.
// Like any bbolt value it is valid only while tx is open.
func getBody(tx *bolt.Tx, id string) []byte {
	b := tx.Bucket(bBodies)
	if v := b.Get([]byte(id)); v != nil {
		return v
	}
	if own := b.Bucket([]byte(id)); own != nil {
		return own.Get(bodyKey)
	}
	return nil
}

// deleteBody deletes message id's inline body from tx, either layout; no
// body is not an error.
func deleteBody(tx *bolt.Tx, id string) error {
	b := tx.Bucket(bBodies)
	if b.Bucket([]byte(id)) != nil {
		return b.DeleteBucket([]byte(id))
	}
	return b.Delete([]byte(id))
}
