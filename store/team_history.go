package store

// A team's message history without walking anyone else's: the per-team
// index every history read seeks (the message log, the edge hours of the
// reports), and the counters kept as mail flows that the reports read
// instead of the messages (GET /emails/metrics, GET /providers/usage).
// Both are local to the node, as the messages are.

import (
	"bytes"
	"encoding/binary"
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
	// counters by the difference, in the same transaction.
	bMsgCounts = []byte("msg_counts")
	// bMsgByFilter is team ‖ 0x00 ‖ 's' ‖ status ‖ 0x00 ‖ message id and
	// team ‖ 0x00 ‖ 'p' ‖ provider ‖ 0x00 ‖ message id (every provider the
	// message used, Message.UsedProvider): the log's status and provider
	// filters walk only the matching messages. Both can change, so every
	// write moves a record's keys (filterKeys) as it moves its counters.
	bMsgByFilter = []byte("msg_by_filter")
)

// Values of bMsgByTeam and bMsgByFilter are be64(CreatedAt unix nanos),
// so a time window is checked on the index, not on the decoded record.
func createdValue(m *Message) []byte { return []byte(be64Key(m.CreatedAt.UnixNano())) }

func statusIndexPrefix(teamID, status string) []byte {
	return []byte(teamID + "\x00s" + status + "\x00")
}

func providerIndexPrefix(teamID, providerID string) []byte {
	return []byte(teamID + "\x00p" + providerID + "\x00")
}

// filterKeys are m's keys in bMsgByFilter.
func filterKeys(m *Message) map[string]bool {
	keys := map[string]bool{string(statusIndexPrefix(m.TeamID, string(m.Status))) + m.ID: true}
	for _, a := range m.Attempts {
		if a.ProviderID != "" {
			keys[string(providerIndexPrefix(m.TeamID, a.ProviderID))+m.ID] = true
		}
	}
	for _, r := range m.Recipients {
		if r.ProviderID != "" {
			keys[string(providerIndexPrefix(m.TeamID, r.ProviderID))+m.ID] = true
		}
	}
	return keys
}

// moveFilterKeys replaces old's filter keys with m's.
func moveFilterKeys(tx *bolt.Tx, old map[string]bool, m *Message) error {
	b := tx.Bucket(bMsgByFilter)
	cur := filterKeys(m)
	for k := range old {
		if !cur[k] {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	for k := range cur {
		if !old[k] {
			if err := b.Put([]byte(k), createdValue(m)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Counter kinds. hour is be64(unix seconds of the UTC hour the message
// was created in); statuses are the public ones (SPEC §4).
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
)

func be64Key(v int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return string(b[:])
}

func hourKey(t time.Time) string { return be64Key(t.Truncate(time.Hour).Unix()) }

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

// messageCounts is m's contribution to the counters, by full key.
func messageCounts(m *Message) map[string]int64 {
	out := make(map[string]int64, 4+2*len(m.Recipients))
	team, hour, status := m.TeamID+"\x00", hourKey(m.CreatedAt), string(m.Status)
	out[team+countStatus+hour+status]++
	seen := map[string]bool{}
	note := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out[team+countProvider+p+"\x00"+hour+status]++
		}
	}
	for _, a := range m.Attempts {
		note(a.ProviderID)
	}
	for i := range m.Recipients {
		r := &m.Recipients[i]
		note(r.ProviderID)
		p := m.ResultProvider(r)
		switch rs := string(r.Status); {
		case p == "":
		case rs == MsgSent:
			at := m.UpdatedAt
			if r.UpdatedAt != nil {
				at = *r.UpdatedAt
			}
			out[team+countSentDay+hour+p+"\x00"+be64Key(utcDay(at).Unix())]++
			fallthrough
		case rs == MsgPending || rs == MsgFailed || rs == MsgRejected:
			out[team+countRecipient+hour+p+"\x00"+rs]++
		}
	}
	return out
}

// addCounts adds sign × each of counts to the counters.
func addCounts(tx *bolt.Tx, counts map[string]int64, sign int64) error {
	delta := make(map[string]int64, len(counts))
	for k, n := range counts {
		delta[k] = sign * n
	}
	return applyCounts(tx, delta)
}

// moveCounts moves the counters from a record's old contribution to its
// new one; most updates (an attempt starting) change none of them.
func moveCounts(tx *bolt.Tx, old, new map[string]int64) error {
	delta := make(map[string]int64)
	for k, n := range new {
		if d := n - old[k]; d != 0 {
			delta[k] = d
		}
	}
	for k, n := range old {
		if _, ok := new[k]; !ok {
			delta[k] = -n
		}
	}
	return applyCounts(tx, delta)
}

func applyCounts(tx *bolt.Tx, delta map[string]int64) error {
	b := tx.Bucket(bMsgCounts)
	for k, d := range delta {
		if d == 0 {
			continue
		}
		var n int64
		if v := b.Get([]byte(k)); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		n += d
		var err error
		if n <= 0 {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), []byte(be64Key(n)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// indexNewMessage enters a new message in its team's index and counters.
func indexNewMessage(tx *bolt.Tx, m *Message) error {
	if err := tx.Bucket(bMsgByTeam).Put(teamIndexKey(m.TeamID, m.ID), createdValue(m)); err != nil {
		return err
	}
	if err := moveFilterKeys(tx, nil, m); err != nil {
		return err
	}
	return addCounts(tx, messageCounts(m), 1)
}

// unindexMessage removes a message being deleted from its team's index
// and counters.
func unindexMessage(tx *bolt.Tx, m *Message) error {
	if err := tx.Bucket(bMsgByTeam).Delete(teamIndexKey(m.TeamID, m.ID)); err != nil {
		return err
	}
	for k := range filterKeys(m) {
		if err := tx.Bucket(bMsgByFilter).Delete([]byte(k)); err != nil {
			return err
		}
	}
	return addCounts(tx, messageCounts(m), -1)
}

// forCounts calls fn with the rest of each counter key under prefix ‖
// be64(hour) for hours in [from, to) (a zero to is open) and its count.
func (s *Store) forCounts(prefix string, from, to time.Time, fn func(hour time.Time, rest []byte, n int64)) error {
	end := int64(1<<63 - 1)
	if !to.IsZero() {
		end = to.Unix()
	}
	return s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMsgCounts).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek([]byte(prefix + hourKey(from))); k != nil && len(k) >= len(p)+8 && string(k[:len(p)]) == prefix; k, v = c.Next() {
			h := int64(binary.BigEndian.Uint64(k[len(p):]))
			if h >= end {
				return nil
			}
			if len(v) == 8 {
				fn(time.Unix(h, 0).UTC(), k[len(p)+8:], int64(binary.BigEndian.Uint64(v)))
			}
		}
		return nil
	})
}

// StatusCounts calls fn with the number of teamID's messages created in
// each UTC hour of [from, to) (from rounded down to its hour; a zero to is
// open) by current status, in hour order; hours without messages are
// skipped. With a providerID, only messages that provider handled
// (Message.UsedProvider) count.
func (s *Store) StatusCounts(teamID, providerID string, from, to time.Time, fn func(hour time.Time, status string, n int64)) error {
	prefix := teamID + "\x00" + countStatus
	if providerID != "" {
		prefix = teamID + "\x00" + countProvider + providerID + "\x00"
	}
	return s.forCounts(prefix, from, to, func(hour time.Time, rest []byte, n int64) { fn(hour, string(rest), n) })
}

// RecipientCounts calls fn with the number of recipients of teamID's
// messages created in each UTC hour from from's hour on, by status and
// by the provider their result is attributed to (Message.ResultProvider;
// recipients never attempted count nowhere), in hour order.
func (s *Store) RecipientCounts(teamID string, from time.Time, fn func(hour time.Time, providerID, status string, n int64)) error {
	prefix := teamID + "\x00" + countRecipient
	return s.forCounts(prefix, from, time.Time{}, func(hour time.Time, rest []byte, n int64) {
		if i := bytes.IndexByte(rest, 0); i >= 0 {
			fn(hour, string(rest[:i]), string(rest[i+1:]), n)
		}
	})
}

// SentCounts calls fn with the number of sent recipients of teamID's
// messages created in each UTC hour from from's hour on, by provider
// (as RecipientCounts) and by the UTC day of their result.
func (s *Store) SentCounts(teamID string, from time.Time, fn func(hour time.Time, providerID string, day time.Time, n int64)) error {
	prefix := teamID + "\x00" + countSentDay
	return s.forCounts(prefix, from, time.Time{}, func(hour time.Time, rest []byte, n int64) {
		if i := bytes.IndexByte(rest, 0); i >= 0 && len(rest) == i+9 {
			fn(hour, string(rest[:i]), time.Unix(int64(binary.BigEndian.Uint64(rest[i+1:])), 0).UTC(), n)
		}
	})
}

// migrateTeamHistory is step 5 → 6: it enters every existing message in
// its team's index and filter indexes and adds it to the counters. Counts are summed in
// memory first (one write per counter, not per message). It only adds
// keys to the three new buckets: no message record is rewritten.
func migrateTeamHistory(tx *bolt.Tx) error {
	idx := tx.Bucket(bMsgByTeam)
	total := map[string]int64{}
	err := tx.Bucket(bMessages).ForEach(func(id, v []byte) error {
		var m Message
		if err := jsonUnmarshal(v, &m); err != nil {
			return err
		}
		for k, n := range messageCounts(&m) {
			total[k] += n
		}
		if err := moveFilterKeys(tx, nil, &m); err != nil {
			return err
		}
		return idx.Put(teamIndexKey(m.TeamID, string(id)), createdValue(&m))
	})
	if err != nil {
		return err
	}
	return applyCounts(tx, total)
}
