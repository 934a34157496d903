package store

// A team's message history without walking anyone else's: the per-team
// index every history read seeks (the message log, the edge hours of the
// reports), and the counters kept as mail flows that the reports read
// instead of the messages (GET /emails/metrics, GET /providers/usage).
// Both are local to the node, as the messages are.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// bMsgByTeam is team ‖ 0x00 ‖ message id → nil. Message IDs start
	// with their acceptance time, so a team's keys are in creation order
	// and a time window or a log cursor (a message ID) is a seek.
	bMsgByTeam = []byte("msg_by_team")
	// bMsgCounts is team ‖ 0x00 ‖ kind ‖ … → be64 count; see the count*
	// kinds. A message's contribution is derived from the record alone
	// (messageCounts), so every write that changes a record moves the
	// counters by the difference, in the same transaction (in the main
	// file through the counter log, count_log.go).
	bMsgCounts = []byte("msg_counts")
	// bMsgByFilter is team ‖ 0x00 ‖ 's' ‖ status ‖ 0x00 ‖ message id and
	// team ‖ 0x00 ‖ 'p' ‖ provider ‖ 0x00 ‖ message id (every provider the
	// message used, Message.UsedProvider): the log's status and provider
	// filters walk only the matching messages. Both can change, so every
	// write moves a record's keys (filterKeys) as it moves its counters.
	// The main file has no provider keys of its own since schema 9: a
	// message's providers are in its bMsgByTeam value (msg_providers.go).
	bMsgByFilter = []byte("msg_by_filter")
)

// Values of bMsgByTeam and bMsgByFilter are be64(CreatedAt unix nanos),
// so a time window is checked on the index, not on the decoded record; in
// the main file a bMsgByTeam value goes on with the message's providers
// (msg_providers.go), and readers take the first 8 bytes.
func createdValue(m *Message) []byte { return []byte(be64Key(m.CreatedAt.UnixNano())) }

func statusIndexPrefix(teamID, status string) []byte {
	return []byte(teamID + "\x00s" + status + "\x00")
}

func providerIndexPrefix(teamID, providerID string) []byte {
	return []byte(teamID + "\x00p" + providerID + "\x00")
}

// filterKeys are m's keys in bMsgByFilter (indexKeys, as a set).
func filterKeys(m *Message) map[string]bool {
	h := indexKeys(m)
	defer h.release()
	keys := make(map[string]bool, h.len())
	for k := range h.all() {
		keys[k] = true
	}
	return keys
}

// Counter kinds. hour is be64(unix seconds of the UTC hour the message
// was created in); statuses are the public ones (SPEC §4). Every counter
// exists twice: per hour under these kinds, and per minute under the same
// kinds in upper case (minuteKind), so that a window whose ends are not
// on whole hours reads minutes there instead of decoding the messages of
// those hours (issue 18: up to two hours of a busy team's mail).
const (
	// countStatus: 'm' ‖ hour ‖ status → messages by current status.
	countStatus = "m"
	// countProvider: 'p' ‖ provider ‖ 0x00 ‖ hour ‖ status → messages
	// that provider handled (Message.UsedProvider), by current status.
	countProvider = "p"
	// countRecipient: 'r' ‖ hour ‖ provider ‖ 0x00 ‖ status → recipients
	// by status, each under the provider its result is attributed to
	// (Message.ResultProvider); pending, sent, failed, rejected only.
	countRecipient = "r"
	// countSentDay: 's' ‖ hour ‖ provider ‖ 0x00 ‖ be64(UTC day) → sent
	// recipients by the day of their result.
	countSentDay = "s"
	// countFeedback: 'f' ‖ hour ‖ provider ‖ 0x00 ‖ type → recipients
	// with a bounce (type hard or soft: the first bounce recorded) or a
	// complaint (type complaint), under the provider the feedback names
	// (else the recipient's result provider); deliverability rates read
	// them (feedback_counts.go).
	countFeedback = "f"
)

func be64Key(v int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return string(b[:])
}

func hourKey(t time.Time) string { return be64Key(t.Truncate(time.Hour).Unix()) }

// minuteKind is the kind of the per-minute twin of an hour counter kind.
func minuteKind(kind string) string { return strings.ToUpper(kind) }

func utcDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// UsedProvider reports whether any attempt or recipient result of m names
// the provider.
func (m *Message) UsedProvider(id string) bool {
	for _, a := range m.Attempts {
		if a.ProviderID == id {
			return true
		}
	}
	for _, r := range m.Recipients {
		if r.ProviderID == id {
			return true
		}
	}
	return false
}

// ResultProvider is the provider a recipient's result is attributed to:
// the one its result names or, while it has none (pending after a
// deferral, failed before any upstream reply), the provider of the
// message's latest attempt; "" when never attempted.
func (m *Message) ResultProvider(r *Recipient) string {
	if r.ProviderID != "" {
		return r.ProviderID
	}
	for i := len(m.Attempts) - 1; i >= 0; i-- {
		if id := m.Attempts[i].ProviderID; id != "" {
			return id
		}
	}
	return ""
}

// messageCounts is m's contribution to the counters, by full key
// (countKeys, as a map).
func messageCounts(m *Message) map[string]int64 {
	h := countKeys(m)
	defer h.release()
	out := make(map[string]int64, h.len())
	for k, n := range h.all() {
		out[k] = n
	}
	return out
}

// indexNewMessage enters a new message in its team's index and counters.
func indexNewMessage(tx *bolt.Tx, m *Message) error {
	if err := tx.Bucket(bMsgByTeam).Put(teamIndexKey(m.TeamID, m.ID), teamIndexValue(tx, m)); err != nil {
		return err
	}
	if err := moveIndexKeys(tx, m.TeamID, m.ID, nil, m); err != nil {
		return err
	}
	counts := countKeys(m)
	defer counts.release()
	return moveCountKeys(tx, nil, counts)
}

// unindexMessage removes a message being deleted from its team's index
// and counters.
func unindexMessage(tx *bolt.Tx, m *Message) error {
	keys, counts := indexKeys(m), countKeys(m)
	defer keys.release()
	defer counts.release()
	// Before the team index key goes: its value says whether the record
	// has provider keys of an earlier version to delete.
	if err := moveIndexKeys(tx, m.TeamID, m.ID, keys, nil); err != nil {
		return err
	}
	if err := tx.Bucket(bMsgByTeam).Delete(teamIndexKey(m.TeamID, m.ID)); err != nil {
		return err
	}
	return moveCountKeys(tx, counts, nil)
}

// forCounts calls fn with the rest of each counter key under prefix ‖
// be64(time) for times in [from, to) (a zero to is open) and its count:
// the folded counters, then the changes pending in the log (pendingCounts;
// fn sums them).
func forCounts(tx *bolt.Tx, pending map[string]int64, prefix string, from, to time.Time, fn func(at time.Time, rest []byte, n int64)) {
	end := int64(1<<63 - 1)
	if !to.IsZero() {
		end = to.Unix()
	}
	start := max(from.Unix(), 0)
	p := []byte(prefix)
	c := tx.Bucket(bMsgCounts).Cursor()
	for k, v := c.Seek([]byte(prefix + be64Key(start))); k != nil && len(k) >= len(p)+8 && string(k[:len(p)]) == prefix; k, v = c.Next() {
		at := int64(binary.BigEndian.Uint64(k[len(p):]))
		if at >= end {
			break
		}
		if len(v) == 8 {
			fn(time.Unix(at, 0).UTC(), k[len(p)+8:], int64(binary.BigEndian.Uint64(v)))
		}
	}
	for k, n := range pending {
		if len(k) < len(p)+8 || k[:len(p)] != prefix {
			continue
		}
		if at := int64(binary.BigEndian.Uint64([]byte(k[len(p) : len(p)+8]))); at >= start && at < end {
			fn(time.Unix(at, 0).UTC(), []byte(k[len(p)+8:]), n)
		}
	}
}

// StatusCounts calls fn with the number of teamID's messages created in
// [from, to) (both rounded down to their UTC minute; a zero to is open) by
// current status, in time order, per counted span: at is the start of a
// whole UTC hour, or of a minute at the range's ends. Spans without
// messages are skipped. With a providerID, only messages that provider
// handled (Message.UsedProvider) count.
func (s *Store) StatusCounts(teamID, providerID string, from, to time.Time, fn func(at time.Time, status string, n int64)) error {
	kind, mid := countStatus, ""
	if providerID != "" {
		kind, mid = countProvider, providerID+"\x00"
	}
	return s.readCounts(teamID, kind, mid, from, to, func(at time.Time, rest []byte, n int64) { fn(at, string(rest), n) })
}

// RecipientCounts calls fn with the number of recipients of teamID's
// messages created from from (rounded down to its minute) on, by status
// and by the provider their result is attributed to
// (Message.ResultProvider; recipients never attempted count nowhere), per
// counted span as StatusCounts.
func (s *Store) RecipientCounts(teamID string, from time.Time, fn func(at time.Time, providerID, status string, n int64)) error {
	return s.readCounts(teamID, countRecipient, "", from, time.Time{}, func(at time.Time, rest []byte, n int64) {
		if i := bytes.IndexByte(rest, 0); i >= 0 {
			fn(at, string(rest[:i]), string(rest[i+1:]), n)
		}
	})
}

// SentCounts calls fn with the number of sent recipients of teamID's
// messages created from from (rounded down to its minute) on, by provider
// (as RecipientCounts) and by the UTC day of their result.
func (s *Store) SentCounts(teamID string, from time.Time, fn func(at time.Time, providerID string, day time.Time, n int64)) error {
	return s.readCounts(teamID, countSentDay, "", from, time.Time{}, func(at time.Time, rest []byte, n int64) {
		if i := bytes.IndexByte(rest, 0); i >= 0 && len(rest) == i+9 {
			fn(at, string(rest[:i]), time.Unix(int64(binary.BigEndian.Uint64(rest[i+1:])), 0).UTC(), n)
		}
	})
}

// migrateTeamHistory is step 5 → 6, chunked (batchFn): it enters each
// message after the cursor, up to limit, in its team's index and filter
// indexes and adds it to the counters. It only adds keys to the three new
// buckets: no message record is rewritten. Counts are summed in memory
// per batch and added to what earlier batches committed (one read and one
// write per counter per batch, not per message); keys are written in key
// order, since bbolt splits and rewrites fewer pages for sorted puts.
func migrateTeamHistory(tx *bolt.Tx, after []byte, limit int) (last []byte, n int, done bool, err error) {
	byTeam, byFilter := map[string][]byte{}, map[string][]byte{}
	total := map[string]int64{}
	c := tx.Bucket(bMessages).Cursor()
	k, v := seekAfter(c, after)
	for ; k != nil && n < limit; k, v = c.Next() {
		var m Message
		if err := jsonUnmarshal(v, &m); err != nil {
			return nil, 0, false, fmt.Errorf("message %s: %w", k, err)
		}
		for ck, cn := range messageCounts(&m) {
			total[ck] += cn
		}
		for fk := range filterKeys(&m) {
			byFilter[fk] = createdValue(&m)
		}
		byTeam[string(teamIndexKey(m.TeamID, string(k)))] = createdValue(&m)
		last, n = k, n+1
	}
	last = bytes.Clone(last) // k points into the map, valid only in tx
	for _, kv := range []struct {
		b    []byte
		keys map[string][]byte
	}{{bMsgByTeam, byTeam}, {bMsgByFilter, byFilter}} {
		b := tx.Bucket(kv.b)
		for _, key := range slices.Sorted(maps.Keys(kv.keys)) {
			if err := b.Put([]byte(key), kv.keys[key]); err != nil {
				return nil, 0, false, err
			}
		}
	}
	counts := tx.Bucket(bMsgCounts)
	for _, key := range slices.Sorted(maps.Keys(total)) {
		sum := total[key]
		if v := counts.Get([]byte(key)); len(v) == 8 {
			sum += int64(binary.BigEndian.Uint64(v))
		}
		if err := counts.Put([]byte(key), []byte(be64Key(sum))); err != nil {
			return nil, 0, false, err
		}
	}
	return last, n, k == nil, nil
}

// countMessages is the number of message records, for the progress log
// of a step over every message (a walk of the bucket's pages, no decode).
func countMessages(tx *bolt.Tx) int { return keyCount(tx, bMessages) }
