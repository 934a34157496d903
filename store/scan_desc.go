package store

import (
	"bytes"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MessagesDesc calls fn for each message of teamID created in [from, to)
// (a zero bound is open) whose ID sorts below before ("" for no bound),
// newest first, until fn returns false. It is the message log's scan: the
// newest page is the common request, and a cursor page continues right
// below the previous page's last ID.
//
// As MessagesSince does, it seeks by the time encoded in the IDs (widened
// by seekSlack, CreatedAt decides), skips other teams' records by a byte
// search before decoding, and reads in chunks of scanChunk records so a long
// scan never holds one read transaction (and with it the committer) for
// long.
func (s *Store) MessagesDesc(teamID, before string, from, to time.Time, fn func(*Message) bool) error {
	upper := []byte(nil) // exclusive; nil means past the last message
	if !to.IsZero() {
		upper = []byte(idFloor(PrefixMessage, to.Add(seekSlack)))
	}
	if before != "" && (upper == nil || before < string(upper)) {
		upper = []byte(before)
	}
	lower := []byte(PrefixMessage)
	if !from.IsZero() {
		lower = []byte(idFloor(PrefixMessage, from.Add(-seekSlack)))
	}
	needle := []byte(`"team_id":"` + teamID + `"`)
	for {
		stop := false
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bMessages).Cursor()
			var k, v []byte
			switch {
			case upper == nil:
				k, v = c.Last()
			default:
				// The first key at or after upper, then one back: the
				// largest key strictly below upper, whether or not upper
				// itself still exists.
				if k, _ = c.Seek(upper); k == nil {
					k, v = c.Last()
				} else {
					k, v = c.Prev()
				}
			}
			for n := 0; ; n++ {
				if k == nil || !bytes.HasPrefix(k, []byte(PrefixMessage)) || bytes.Compare(k, lower) < 0 {
					stop = true
					return nil
				}
				if n == scanChunk {
					upper = bytes.Clone(k)
					// k itself is not processed yet: resume at the key
					// just above it.
					upper = append(upper, 0)
					return nil
				}
				if bytes.Contains(v, needle) {
					var m Message
					if err := jsonUnmarshal(v, &m); err != nil {
						return err
					}
					inWindow := m.TeamID == teamID && (from.IsZero() || !m.CreatedAt.Before(from)) &&
						(to.IsZero() || m.CreatedAt.Before(to))
					if inWindow && !fn(&m) {
						stop = true
						return nil
					}
				}
				k, v = c.Prev()
			}
		})
		if err != nil || stop {
			return err
		}
	}
}
