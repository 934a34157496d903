package store

// The main file's per-provider history counters, written as a log (issue
// 18: delivery with 200 providers in scope within 20 % of 2).
//
// A counter key names its provider before or just after the hour
// (team ‖ 'p' ‖ provider ‖ hour ‖ status, team ‖ 'r' ‖ hour ‖ provider ‖
// status, …), so the counters one record write moves sit in a region per
// provider. A commit groups the writes of several messages; with 2
// providers they all land on the same few leaf pages, with 200 on a
// different page each: BenchmarkDelivery measured 7.5 page writes per
// message with 2 providers and 15–16 with 200, the difference being
// exactly these keys (switched off, 200 providers wrote 7.5 again). Any
// order that keeps a provider inside the key has the same spread once a
// time bucket holds more than a page of keys (the 'r' counters, time
// first already, spread the most), so the fix is not another order but
// not writing them in place on the hot path: the main file appends each
// write's per-provider counter changes to bMsgCountLog under a sequence
// number, where the changes of every concurrent write are adjacent, and
// folds the log into bMsgCounts in one pass every countLogFoldAt writes,
// touching each provider's page once per fold instead of once per
// commit. Reads add the team's pending log to the folded counters in the
// same transaction, so an answer is the same before and after a fold.
// Day files are written by the mover 256 records at a time and keep
// writing their counters in place (they have no log bucket).

import (
	"bytes"
	"encoding/binary"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// bMsgCountLog (main file) is team ‖ 0x00 ‖ be64(sequence) → one record
// write's counter changes of logged kinds: for each, uvarint(len(rest)) ‖
// rest ‖ varint(delta), where team ‖ 0x00 ‖ rest is the bMsgCounts key.
// One key per write keeps the log small and its writes to one page.
var bMsgCountLog = []byte("msg_count_log")

// countLogFoldAt is how many logged record writes one fold takes: a fold
// writes each counter page the writes touched once, so the larger, the
// fewer page writes per message (at 200 providers a fold of 2,048 writes,
// ~500 messages, dirties a few hundred pages), and the longer the one
// commit that carries the fold and the more log a read adds up (at most
// ~12 keys per write).
const countLogFoldAt = 2048

// addCount moves counter k in b by d, deleting it at zero.
func addCount(b *bolt.Bucket, k []byte, d int64) error {
	var n int64
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	if n += d; n <= 0 {
		return b.Delete(k)
	}
	v := make([]byte, 8) // bbolt keeps the value until the commit
	binary.BigEndian.PutUint64(v, uint64(n))
	return b.Put(k, v)
}

// logCounts appends one record write's counter changes (keys and deltas
// as diff gives them) to the log, and folds the log when this write's
// sequence reaches countLogFoldAt.
func logCounts(tx *bolt.Tx, log *bolt.Bucket, keys [][]byte, ds []int64) error {
	seq, err := log.NextSequence()
	if err != nil {
		return err
	}
	t := bytes.IndexByte(keys[0], 0) + 1 // one record: one team
	size := 0
	for _, k := range keys {
		size += len(k) - t + 2*binary.MaxVarintLen64
	}
	v := make([]byte, 0, size) // kept by bbolt until the commit
	for i, k := range keys {
		v = binary.AppendUvarint(v, uint64(len(k)-t))
		v = append(v, k[t:]...)
		v = binary.AppendVarint(v, ds[i])
	}
	lk := make([]byte, 0, t+8)
	lk = binary.BigEndian.AppendUint64(append(lk, keys[0][:t]...), seq)
	if err := log.Put(lk, v); err != nil {
		return err
	}
	if seq >= countLogFoldAt {
		return foldCountLog(tx)
	}
	return nil
}

// logEntries calls fn with each change in a log value (rest as stored:
// valid while the transaction is); it stops at a malformed entry.
func logEntries(v []byte, fn func(rest []byte, d int64)) {
	for len(v) > 0 {
		n, w := binary.Uvarint(v)
		if w <= 0 || uint64(len(v)-w) < n {
			return
		}
		rest := v[w : w+int(n)]
		v = v[w+int(n):]
		d, w := binary.Varint(v)
		if w <= 0 {
			return
		}
		v = v[w:]
		fn(rest, d)
	}
}

// foldCountLog adds every logged change to bMsgCounts, in key order (one
// write per counter), and empties the log: dropping the bucket frees its
// pages at once, and its sequence starts again.
func foldCountLog(tx *bolt.Tx) error {
	log := tx.Bucket(bMsgCountLog)
	if log == nil {
		return nil
	}
	// Sums indexed by counter key: a fold reads ~12 changes per logged
	// write but few distinct counters, so the key is built in one buffer
	// and made a string only for a counter's first change (a string per
	// change was 10 % of the objects a relayed message allocated).
	at := map[string]int{}
	var sums []int64
	var key []byte
	c := log.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if t := bytes.IndexByte(k, 0) + 1; t > 0 {
			logEntries(v, func(rest []byte, d int64) {
				key = append(append(key[:0], k[:t]...), rest...)
				if i, ok := at[string(key)]; ok {
					sums[i] += d
					return
				}
				at[string(key)] = len(sums)
				sums = append(sums, d)
			})
		}
	}
	if err := tx.DeleteBucket(bMsgCountLog); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bMsgCountLog); err != nil {
		return err
	}
	b := tx.Bucket(bMsgCounts)
	for _, k := range slices.Sorted(maps.Keys(at)) {
		if d := sums[at[k]]; d != 0 {
			if err := addCount(b, []byte(k), d); err != nil {
				return err
			}
		}
	}
	return nil
}

// pendingCounts is teamID's log in tx summed by counter key (nil in a day
// file or with nothing pending): what forCounts adds to the folded
// counters.
func pendingCounts(tx *bolt.Tx, teamID string) map[string]int64 {
	log := tx.Bucket(bMsgCountLog)
	if log == nil {
		return nil
	}
	prefix := []byte(teamID + "\x00")
	var out map[string]int64
	c := log.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if out == nil {
			out = map[string]int64{}
		}
		logEntries(v, func(rest []byte, d int64) { out[teamID+"\x00"+string(rest)] += d })
	}
	return out
}
