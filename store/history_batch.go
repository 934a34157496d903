package store

// A move step's writes in bulk (issue 18: the mover's cost to acceptance).
//
// Record by record, a step of 1,024 messages made ~20,000 B-tree updates in
// each file in the records' order: every message's counters (hour and
// minute twins of four kinds) read and written one by one, its index keys
// scattered over 100 teams' ranges, and in the main file one counter-log
// entry per message. The same messages' counters mostly coincide (a team's
// minute, its provider, the status), so a step sums them first and writes
// each counter once, and writes every bucket's keys in key order, where
// bbolt finds the next key on the leaf it just changed. What is written is
// exactly what the one-by-one path writes (TestMoveBatchMatchesOneByOne).

import (
	"encoding/binary"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// keyOps is a bucket's writes of one step: puts (val != nil) or deletes,
// applied in key order.
type keyOps map[string][]byte

func (o keyOps) apply(b *bolt.Bucket, p *moverPacer) error {
	for _, k := range slices.Sorted(maps.Keys(o)) {
		p.tick()
		var err error
		if v := o[k]; v != nil {
			err = b.Put([]byte(k), v)
		} else {
			err = b.Delete([]byte(k))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sumCounts adds h's counts, negated with sign -1, to sums.
func sumCounts(sums map[string]int64, h *histKeys, sign int64) {
	for i := range h.len() {
		sums[string(h.key(i))] += sign * h.ents[i].n
	}
}

// putHistories writes ms, a move step's records of one day, in that day
// file's transaction with their index keys and counters, as putHistory
// does one by one. A record already in the file (moved before, restored,
// moved again) goes through putHistory, which replaces its keys.
//
// p (nil: none) pauses the work between records and keys; the day file's
// transaction stays open meanwhile, which holds up no acceptance (the
// main file's writes do not wait for it).
func putHistories(tx *bolt.Tx, ms []*moving, p *moverPacer) error {
	msgs := tx.Bucket(bMessages)
	recs, byTeam, byFilter, upstream := keyOps{}, keyOps{}, keyOps{}, keyOps{}
	sums := map[string]int64{}
	var fresh int64
	var latest int64
	for _, mv := range ms {
		p.tick()
		m := &mv.m
		latest = max(latest, m.UpdatedAt.UnixNano())
		if msgs.Get([]byte(m.ID)) != nil {
			if err := putHistory(tx, m, mv.raw); err != nil {
				return err
			}
			continue
		}
		fresh++
		recs[m.ID] = mv.raw
		created := createdValue(m)
		byTeam[string(teamIndexKey(m.TeamID, m.ID))] = teamIndexValue(tx, m)
		keys, counts := indexKeys(m), countKeys(m)
		for i := range keys.len() {
			byFilter[string(keys.key(i))] = created
		}
		sumCounts(sums, counts, 1)
		keys.release()
		counts.release()
		for k := range upstreamIDs(m) {
			upstream[k] = []byte(m.ID)
		}
	}
	for _, w := range []struct {
		bucket []byte
		ops    keyOps
	}{{bMessages, recs}, {bMsgByTeam, byTeam}, {bMsgByFilter, byFilter}, {hUpstream, upstream}} {
		if err := w.ops.apply(tx.Bucket(w.bucket), p); err != nil {
			return err
		}
	}
	counters := tx.Bucket(bMsgCounts)
	for _, k := range slices.Sorted(maps.Keys(sums)) {
		p.tick()
		if d := sums[k]; d != 0 {
			if err := addCount(counters, []byte(k), d); err != nil {
				return err
			}
		}
	}
	if fresh > 0 {
		if err := addDayCount(tx, fresh); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bMeta)
	if v := meta.Get(keyMaxUpdated); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < latest {
		return meta.Put(keyMaxUpdated, []byte(be64Key(latest)))
	}
	return nil
}

// dropMains deletes ms, records still as the mover copied them, from the
// main file's records, indexes, and the mover's list and journal, as
// dropMain and deleteMoved do one by one, and adds their counters' changes
// to sums (team → counter key → change) for logSums.
func dropMains(tx *bolt.Tx, ms []*moving, sums map[string]map[string]int64) error {
	byTeamB := tx.Bucket(bMsgByTeam)
	recs, byTeam, byFilter, fin, journal := keyOps{}, keyOps{}, keyOps{}, keyOps{}, keyOps{}
	for _, mv := range ms {
		m := &mv.m
		recs[m.ID], journal[m.ID], fin[string(mv.key)] = nil, nil, nil
		tk := teamIndexKey(m.TeamID, m.ID)
		byTeam[string(tk)] = nil
		// The main file has provider keys only for a record of an
		// earlier version, whose team index value lists no providers
		// (moveIndexKeys).
		legacy := !listsProviders(byTeamB.Get(tk))
		keys := indexKeys(m)
		for i := range keys.len() {
			if k := keys.key(i); legacy || !isProviderIndexKey(k, m.TeamID) {
				byFilter[string(k)] = nil
			}
		}
		keys.release()
		if sums[m.TeamID] == nil {
			sums[m.TeamID] = map[string]int64{}
		}
		counts := countKeys(m)
		sumCounts(sums[m.TeamID], counts, -1)
		counts.release()
	}
	for _, w := range []struct {
		bucket []byte
		ops    keyOps
	}{{bHistJournal, journal}, {bFinished, fin}, {bMsgByFilter, byFilter}, {bMsgByTeam, byTeam}, {bMessages, recs}} {
		// In the committer: a pause here would hold every write.
		if err := w.ops.apply(tx.Bucket(w.bucket), nil); err != nil {
			return err
		}
	}
	return nil
}

// logSums writes counter changes summed by dropMains to the counter log:
// one entry per team.
func logSums(tx *bolt.Tx, sums map[string]map[string]int64) error {
	for _, team := range slices.Sorted(maps.Keys(sums)) {
		var keys [][]byte
		var ds []int64
		for _, k := range slices.Sorted(maps.Keys(sums[team])) {
			if d := sums[team][k]; d != 0 {
				keys, ds = append(keys, []byte(k)), append(ds, d)
			}
		}
		if len(keys) == 0 {
			continue
		}
		// Fetched each time: a fold replaces the log bucket.
		if err := logCounts(tx, tx.Bucket(bMsgCountLog), keys, ds); err != nil {
			return err
		}
	}
	return nil
}
