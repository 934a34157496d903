package store

import (
	"encoding/binary"
	"time"
)

// NewIDAt is NewID with the time part taken from t instead of the clock.
// It exists for tests that need records "created" at a given time, and for
// building seek keys.
func NewIDAt(prefix string, t time.Time) string {
	id := NewID(prefix)
	floor := idFloor(prefix, t)
	// The first 10 characters carry the 48 time bits (and 2 random bits,
	// zero in the floor); keep the random tail of the fresh ID.
	return floor[:len(prefix)+10] + id[len(prefix)+10:]
}

// idFloor is the smallest ID of that kind created at or after t: the time
// part of NewID with every random bit zero. IDs sort by creation time
// because their encoding preserves byte order.
func idFloor(prefix string, t time.Time) string {
	var raw [15]byte
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(ms)<<16)
	copy(raw[:6], ts[:6])
	return prefix + lowerBase32.EncodeToString(raw[:])
}

// scanChunk bounds how many records one read transaction visits. A
// long-lived bbolt read transaction holds the old mmap, so a writer that
// must grow the file would wait for the whole scan; chunking lets the
// committer (and thus SMTP DATA replies) through between chunks.
const scanChunk = 512

// seekSlack widens the ID seek: a message's ID is taken when it is
// accepted while CreatedAt may come from a different clock reading, so
// the seek starts a little early and CreatedAt decides.
const seekSlack = time.Hour

// MessagesSince calls fn for each message of teamID created at or after
// since, in ID (creation) order, until fn returns false. A zero since
// visits the team's whole history. It is read-only, and it does not see
// messages committed after it passed their position; fn runs outside any
// write and may itself read the store.
func (s *Store) MessagesSince(teamID string, since time.Time, fn func(*Message) bool) error {
	return s.MessagesBetween(teamID, since, time.Time{}, fn)
}

// MessagesBetween is MessagesSince for messages created in [from, to) (a
// zero to is open).
//
// It walks the team's index (bMsgByTeam), whose keys sort by message ID,
// and IDs start with their creation time: the cursor seeks straight to
// the first candidate of that team, other teams' messages are never read,
// and a record is decoded only when the creation time in its index value
// is in the window. A message whose ID is more than seekSlack away from
// its CreatedAt is not found by a seek that its CreatedAt would match;
// IDs and CreatedAt are both taken at acceptance, so that does not happen.
func (s *Store) MessagesBetween(teamID string, from, to time.Time, fn func(*Message) bool) error {
	low, high := PrefixMessage, ""
	if !from.IsZero() {
		low = idFloor(PrefixMessage, from.Add(-seekSlack))
	}
	if !to.IsZero() {
		high = idFloor(PrefixMessage, to.Add(seekSlack))
	}
	w := &idxWalk{bucket: bMsgByTeam, prefix: teamIndexKey(teamID, ""), low: low, high: high,
		keep: func(v []byte, get func() []byte) []byte {
			if !inWindow(v, from, to) {
				return nil
			}
			return get()
		},
		check: func(m *Message) bool {
			return m.TeamID == teamID && !m.CreatedAt.Before(from) && (to.IsZero() || m.CreatedAt.Before(to))
		}}
	return s.walkIndex(w, nil, fn)
}
