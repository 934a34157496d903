package store

import (
	"bytes"
	"encoding/binary"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// histKeys is one message's keys in the history counters (each with its
// count: messageCounts) or in the filter index (filterKeys), built in one
// buffer and sorted, so that a record write finds what changed by walking
// the old and the new keys side by side. Two maps of concatenated string
// keys per record version were ~10 % of the relay's CPU per message with
// their garbage (issue 19); this is two buffers, reused through a pool.
type histKeys struct {
	buf  []byte
	ents []histEnt
}

// histEnt is one key, buf[off:end], and its count.
type histEnt struct {
	off, end int
	n        int64
}

var histPool = sync.Pool{New: func() any { return &histKeys{buf: make([]byte, 0, 1024), ents: make([]histEnt, 0, 24)} }}

func newHistKeys() *histKeys {
	h := histPool.Get().(*histKeys)
	h.buf, h.ents = h.buf[:0], h.ents[:0]
	return h
}

// release gives h back to the pool; h must not be used after.
func (h *histKeys) release() {
	if h != nil && cap(h.buf) <= 64<<10 {
		histPool.Put(h)
	}
}

func (h *histKeys) len() int { return len(h.ents) }

// key is the i-th key (in key order once done): valid while h is.
func (h *histKeys) key(i int) []byte { e := h.ents[i]; return h.buf[e.off:e.end:e.end] }

// add appends the key made of parts, counted n.
func (h *histKeys) add(n int64, parts ...string) {
	off := len(h.buf)
	for _, p := range parts {
		h.buf = append(h.buf, p...)
	}
	h.ents = append(h.ents, histEnt{off: off, end: len(h.buf), n: n})
}

// done sorts the keys and folds equal ones: counts add up, or with set
// the key is kept once (counted 1).
func (h *histKeys) done(set bool) *histKeys {
	slices.SortFunc(h.ents, func(a, b histEnt) int { return bytes.Compare(h.buf[a.off:a.end], h.buf[b.off:b.end]) })
	out := h.ents[:0]
	for _, e := range h.ents {
		if k := len(out) - 1; k >= 0 && bytes.Equal(h.buf[out[k].off:out[k].end], h.buf[e.off:e.end]) {
			if !set {
				out[k].n += e.n
			}
			continue
		}
		out = append(out, e)
	}
	h.ents = out
	return h
}

// all yields each key (as a string) and its count, in key order.
func (h *histKeys) all() iter.Seq2[string, int64] {
	return func(yield func(string, int64) bool) {
		for i, e := range h.ents {
			if !yield(string(h.key(i)), e.n) {
				return
			}
		}
	}
}

// diff calls fn with every key whose count differs between old and new
// (either may be nil: no keys) and the difference, in key order.
func diff(old, new *histKeys, fn func(k []byte, d int64) error) error {
	i, j := 0, 0
	nOld, nNew := 0, 0
	if old != nil {
		nOld = old.len()
	}
	if new != nil {
		nNew = new.len()
	}
	for i < nOld || j < nNew {
		c := 0
		switch {
		case i == nOld:
			c = 1
		case j == nNew:
			c = -1
		default:
			c = bytes.Compare(old.key(i), new.key(j))
		}
		var err error
		switch {
		case c < 0:
			err = fn(old.key(i), -old.ents[i].n)
			i++
		case c > 0:
			err = fn(new.key(j), new.ents[j].n)
			j++
		default:
			if d := new.ents[j].n - old.ents[i].n; d != 0 {
				err = fn(new.key(j), d)
			}
			i, j = i+1, j+1
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// countKeys is m's contribution to the counters (see the count* kinds):
// every counter once under its hour kind and once under its minute kind.
func countKeys(m *Message) *histKeys {
	h := newHistKeys()
	team, status := m.TeamID, string(m.Status)
	var hb, mb [8]byte
	binary.BigEndian.PutUint64(hb[:], uint64(m.CreatedAt.Truncate(time.Hour).Unix()))
	binary.BigEndian.PutUint64(mb[:], uint64(m.CreatedAt.Truncate(time.Minute).Unix()))
	hour, minute := string(hb[:]), string(mb[:]) // no allocation: they do not escape add
	// add counts one under kind ‖ mid ‖ hour ‖ rest and its minute twin
	// (upper: minuteKind(kind), spelled out to build no string).
	add := func(kind, upper, mid, midEnd, rest1, rest2, rest3 string) {
		h.add(1, team, "\x00", kind, mid, midEnd, hour, rest1, rest2, rest3)
		h.add(1, team, "\x00", upper, mid, midEnd, minute, rest1, rest2, rest3)
	}
	add(countStatus, "M", "", "", status, "", "")
	// The providers this message used, each once (UsedProvider).
	used := func(p string, upTo int) bool {
		for i := range m.Attempts[:upTo] {
			if m.Attempts[i].ProviderID == p {
				return true
			}
		}
		return false
	}
	for i := range m.Attempts {
		if p := m.Attempts[i].ProviderID; p != "" && !used(p, i) {
			add(countProvider, "P", p, "\x00", status, "", "")
		}
	}
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if p := r.ProviderID; p != "" && !used(p, len(m.Attempts)) && !slices.ContainsFunc(m.Recipients[:i], func(o Recipient) bool { return o.ProviderID == p }) {
			add(countProvider, "P", p, "\x00", status, "", "")
		}
		p := m.ResultProvider(r)
		switch rs := string(r.Status); {
		case p == "":
		case rs == string(state.MessageSent):
			at := m.UpdatedAt
			if r.UpdatedAt != nil {
				at = *r.UpdatedAt
			}
			var db [8]byte
			binary.BigEndian.PutUint64(db[:], uint64(utcDay(at).Unix()))
			add(countSentDay, "S", "", "", p, "\x00", string(db[:]))
			fallthrough
		case rs == string(state.MessagePending) || rs == string(state.MessageFailed) || rs == string(state.MessageRejected):
			add(countRecipient, "R", "", "", p, "\x00", rs)
		}
		for _, f := range feedbackCounted(r) {
			fp := f.ProviderID
			if fp == "" {
				fp = p
			}
			add(countFeedback, "F", "", "", fp, "\x00", feedbackCountType(f))
		}
	}
	return h.done(false)
}

// indexKeys are m's keys in bMsgByFilter (each counted 1).
func indexKeys(m *Message) *histKeys {
	h := newHistKeys()
	h.add(1, m.TeamID, "\x00s", string(m.Status), "\x00", m.ID)
	for i := range m.Attempts {
		if p := m.Attempts[i].ProviderID; p != "" {
			h.add(1, m.TeamID, "\x00p", p, "\x00", m.ID)
		}
	}
	for i := range m.Recipients {
		if p := m.Recipients[i].ProviderID; p != "" {
			h.add(1, m.TeamID, "\x00p", p, "\x00", m.ID)
		}
	}
	return h.done(true)
}

// moveCountKeys moves the counters by the difference between a record's
// old and new contribution (nil: none): in the main file through the
// counter log (count_log.go), in a day file in place.
func moveCountKeys(tx *bolt.Tx, old, new *histKeys) error {
	b, log := tx.Bucket(bMsgCounts), tx.Bucket(bMsgCountLog)
	var kb [32][]byte // a write moves up to ~16 counters: no allocation
	var db [32]int64
	logged, ds := kb[:0], db[:0]
	err := diff(old, new, func(k []byte, d int64) error {
		if log != nil {
			logged, ds = append(logged, k), append(ds, d)
			return nil
		}
		return addCount(b, k, d)
	})
	if err != nil || len(logged) == 0 {
		return err
	}
	return logCounts(tx, log, logged, ds)
}

// moveIndexKeys replaces the old filter index entries of record id of
// teamID with m's (old nil: none; m nil: delete them all). In the main
// file the providers go to the team index value instead of provider keys
// (msg_providers.go); a record whose value lists none yet may have
// provider keys from a file of an earlier version, which go then.
func moveIndexKeys(tx *bolt.Tx, teamID, id string, old *histKeys, m *Message) error {
	b, main := tx.Bucket(bMsgByFilter), isMainTx(tx)
	var cur *histKeys
	var created []byte
	if m != nil {
		cur = indexKeys(m)
		defer cur.release()
		created = createdValue(m)
	}
	err := diff(old, cur, func(k []byte, d int64) error {
		if main && isProviderIndexKey(k, teamID) {
			return nil
		}
		if d < 0 {
			return b.Delete(k)
		}
		return b.Put(k, created)
	})
	if err != nil || !main {
		return err
	}
	byTeam := tx.Bucket(bMsgByTeam)
	if old != nil && !listsProviders(byTeam.Get(teamIndexKey(teamID, id))) {
		for i := range old.len() {
			if k := old.key(i); isProviderIndexKey(k, teamID) {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
	}
	if m == nil {
		return nil // unindexMessage deletes the team index key
	}
	return syncProviders(byTeam, m)
}
