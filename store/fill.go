package store

import bolt "go.etcd.io/bbolt"

// appendFill is how full bbolt packs a page it splits in the buckets
// whose keys arrive in ascending order (appendBuckets). bbolt's default,
// 0.5, splits a page at half its size and leaves the left half as it is:
// right for random inserts, which fill it later, but where keys only ever
// go in at the end nothing does, so every page of those buckets stayed
// half empty. The main file held about 5.9 KB per delivered 2 KiB message
// and each commit wrote twice the pages its data needed (issue 18's store
// size, issue 19's writes per message).
var appendFill = 1.0

// bodyFill is the bodies bucket's FillPercent: above 1, a node of it
// fills that many pages before it splits (bbolt patch 3,
// third_party/bbolt/PATCHES.md). bbolt keeps two keys on a page at
// least, so two bodies of about 2 KiB made a two-page node and the bucket
// stayed 51 % full whatever appendFill said: bodies were two thirds of
// the main file's bytes (72 hours of them by default, [retention] body).
// Four pages hold seven such bodies; each commit rewrites the last,
// partly filled node, which stays within four pages.
var bodyFill = 4.0

// appendBuckets take their keys in ascending order: message IDs (time
// first, ids.go), keys that start with a time, or with a team and then an
// ID or a time (ascending within each team's range, where the split that
// leaves one page full leaves the team's next keys the other). The bodies
// bucket, keyed by message ID too, gets bodyFill instead.
var appendBuckets = [][]byte{bMessages, bDue, bInflight, bDataSent, bFinished, bHistJournal,
	bMsgByTeam, bMsgByFilter, bMsgCounts, bMsgCountLog}

// packAppends sets appendFill on tx's append buckets and bodyFill on its
// bodies bucket. FillPercent is not
// stored in the file: it holds for the Bucket values of this transaction,
// which tx.Bucket hands out again for the rest of it.
func packAppends(tx *bolt.Tx) {
	for _, name := range appendBuckets {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = appendFill
		}
	}
	if b := tx.Bucket(bBodies); b != nil {
		b.FillPercent = bodyFill
	}
}
