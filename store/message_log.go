package store

// The message log over time: reading it newest first (the log endpoint)
// and trimming it (the retention sweeps).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// MessagesDesc calls fn for each message of teamID created in [from, to)
// (a zero bound is open) whose ID sorts below before ("" for no bound),
// newest first, until fn returns false. It is the message log's scan: the
// newest page is the common request, and a cursor page continues right
// below the previous page's last ID.
//
// It walks the team's index, seeking by the time encoded in the IDs
// (widened by seekSlack; the creation time in the index value decides,
// so a record outside the window is not even read), and reads in chunks
// of scanChunk keys so a long scan never holds one read transaction (and
// with it the committer) for long.
func (s *Store) MessagesDesc(teamID, before string, from, to time.Time, fn func(*Message) bool) error {
	return s.WalkLog(LogWalk{TeamID: teamID, Before: before, From: from, To: to}, fn)
}

// MessagesDescByStatus is MessagesDesc over the team's messages whose
// current status is status only.
func (s *Store) MessagesDescByStatus(teamID, status, before string, from, to time.Time, fn func(*Message) bool) error {
	return s.WalkLog(LogWalk{TeamID: teamID, Status: status, Before: before, From: from, To: to}, fn)
}

// MessagesDescByProvider is MessagesDesc over the team's messages that
// providerID handled (Message.UsedProvider) only.
func (s *Store) MessagesDescByProvider(teamID, providerID, before string, from, to time.Time, fn func(*Message) bool) error {
	return s.WalkLog(LogWalk{TeamID: teamID, ProviderID: providerID, Before: before, From: from, To: to}, fn)
}

// LogWalk is one newest-first walk of a team's message log (WalkLog).
type LogWalk struct {
	TeamID string
	// Status walks only the messages in that status (the status index);
	// else ProviderID only those that provider handled; else all.
	Status, ProviderID string
	// Text, lower case, skips without decoding every record whose stored
	// form, lower-cased, does not contain it: a necessary condition of a
	// case-insensitive substring match on any of its text fields, so the
	// caller still decides on the decoded record. It is ignored (every
	// record is decoded) when it holds a character the JSON encoding may
	// escape, as the stored form would not contain it verbatim.
	Text string
	// Before is the exclusive upper bound on message IDs ("" for none);
	// From and To bound the creation time as [From, To), zero is open.
	Before   string
	From, To time.Time
	// MaxScan, when > 0, bounds how many index entries the walk looks at
	// (WalkLogBounded): a search that matches little must not read the
	// team's whole history for one page.
	MaxScan int
}

// WalkLogBounded is WalkLog that stops after w.MaxScan index entries.
// resume is then the ID of the last entry looked at: a walk with Before
// set to it continues exactly below (every entry above it and it itself
// was looked at). resume is "" when the walk ended otherwise (fn said
// stop, or nothing is left).
func (s *Store) WalkLogBounded(w LogWalk, fn func(*Message) bool) (resume string, err error) {
	if w.MaxScan <= 0 {
		return "", s.WalkLog(w, fn)
	}
	bucket, prefix, text := s.logWalkScope(w)
	scanned := 0
	err = s.messagesDescVisit(bucket, prefix, w.TeamID, w.ProviderID, w.Before, w.From, w.To, text, fn, func(id []byte) bool {
		if scanned == w.MaxScan {
			return false
		}
		scanned++
		resume = string(id)
		return true
	})
	if scanned < w.MaxScan {
		resume = ""
	}
	return resume, err
}

// WalkLog calls fn for each message of the walk, newest first, until fn
// returns false; see MessagesDesc.
func (s *Store) WalkLog(w LogWalk, fn func(*Message) bool) error {
	bucket, prefix, text := s.logWalkScope(w)
	return s.messagesDescVisit(bucket, prefix, w.TeamID, w.ProviderID, w.Before, w.From, w.To, text, fn, nil)
}

// logWalkScope is the index a walk reads and its text pre-filter.
func (s *Store) logWalkScope(w LogWalk) (bucket, prefix, text []byte) {
	bucket, prefix = bMsgByTeam, teamIndexKey(w.TeamID, "")
	switch {
	case w.Status != "":
		bucket, prefix = bMsgByFilter, statusIndexPrefix(w.TeamID, w.Status)
	case w.ProviderID != "":
		bucket, prefix = bMsgByFilter, providerIndexPrefix(w.TeamID, w.ProviderID)
	}
	if w.Text != "" && !strings.ContainsAny(w.Text, "\"\\<>&\u2028\u2029") && !hasControl(w.Text) {
		text = []byte(w.Text)
	}
	return bucket, prefix, text
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// containsFold reports whether lower(raw) contains text (already lower
// case), lowering into buf (reused across calls).
func containsFold(raw, text []byte, buf *[]byte) bool {
	b := (*buf)[:0]
	for i := 0; i < len(raw); {
		c := raw[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(raw[i:])
		b = utf8.AppendRune(b, unicode.ToLower(r))
		i += n
	}
	*buf = b
	return bytes.Contains(b, text)
}

// inWindow reports whether an index value (be64 creation nanos) lies in
// [from, to); a value of another length is let through (the record
// decides).
func inWindow(v []byte, from, to time.Time) bool {
	if len(v) != 8 {
		return true
	}
	at := int64(binary.BigEndian.Uint64(v))
	return (from.IsZero() || at >= from.UnixNano()) && (to.IsZero() || at < to.UnixNano())
}

// messagesDescVisit walks the index keys prefix ‖ message id of bucket
// from the newest down (see MessagesDesc), with visit, when not nil, called
// with the message ID of each index entry before it is looked at; false stops
// the walk there (that entry not looked at). providerID is the provider of
// a walk of its provider index (logWalkScope), else "".
func (s *Store) messagesDescVisit(bucket, prefix []byte, teamID, providerID, before string, from, to time.Time, text []byte, fn func(*Message) bool, visit func(id []byte) bool) error {
	var buf []byte
	high := "" // exclusive; "" means past the prefix's last key
	if !to.IsZero() {
		high = idFloor(PrefixMessage, to.Add(seekSlack))
	}
	if before != "" && (high == "" || before < high) {
		high = before
	}
	low := PrefixMessage
	if !from.IsZero() {
		low = idFloor(PrefixMessage, from.Add(-seekSlack))
	}
	if !bytes.Equal(prefix, providerIndexPrefix(teamID, providerID)) {
		providerID = "" // a status walk: the status filter wins (logWalkScope)
	}
	w := &idxWalk{bucket: bucket, prefix: prefix, low: low, high: high, desc: true, provider: providerID, team: teamID,
		keep: func(v []byte, get func() []byte) []byte {
			if !inWindow(v, from, to) {
				return nil
			}
			if rec := get(); rec != nil && (text == nil || containsFold(rec, text, &buf)) {
				return rec
			}
			return nil
		},
		check: func(m *Message) bool {
			return m.TeamID == teamID && (from.IsZero() || !m.CreatedAt.Before(from)) && (to.IsZero() || m.CreatedAt.Before(to))
		}}
	return s.walkIndex(w, visit, fn)
}

// The retention sweeps delete old data in small batches: each call reads
// candidates in one short read transaction and deletes at most limit of them
// in one grouped write, so SMTP and HTTP enqueues waiting on the committer
// get through between two batches. Callers loop while more is true.

// sweepVisitMax bounds how many records one sweep call reads, so that a
// history full of records it may not delete (not finished yet) cannot turn
// one call into a scan of everything.
const sweepVisitMax = 4 * scanChunk

// SweepMessages deletes up to limit message records (with any body left)
// of finished messages that finished before cutoff, oldest first, looking
// at IDs above after ("" from the start). Messages still queued or in
// flight are never touched, however old. next is where the following call
// resumes, "" when the walk is complete.
//
// Message IDs start with their acceptance time and a message finishes after
// it was accepted, so the walk starts at the oldest ID and ends at the first
// ID accepted at or after cutoff.
func (s *Store) SweepMessages(cutoff time.Time, after string, limit int) (n int, next string, err error) {
	floor := []byte(idFloor(PrefixMessage, cutoff))
	var ids []string
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMessages).Cursor()
		k, v := c.Seek([]byte(PrefixMessage))
		if after != "" {
			if k, v = c.Seek([]byte(after)); string(k) == after {
				k, v = c.Next()
			}
		}
		visited := 0
		for ; k != nil && bytes.HasPrefix(k, []byte(PrefixMessage)) && bytes.Compare(k, floor) < 0; k, v = c.Next() {
			if visited == sweepVisitMax || len(ids) == limit {
				return nil
			}
			visited++
			next = string(k)
			var m Message
			if err := jsonUnmarshal(v, &m); err != nil {
				return err
			}
			if m.State == StateDone && m.UpdatedAt.Before(cutoff) {
				ids = append(ids, m.ID)
			}
		}
		next = "" // the walk reached its end
		return nil
	})
	if err != nil || len(ids) == 0 {
		return 0, next, err
	}
	deleted := 0
	o := &op{done: make(chan error, 1)}
	o.fn = func(tx *bolt.Tx) error {
		o.after, deleted = o.after[:0], 0 // the function may run again
		b := tx.Bucket(bMessages)
		for _, id := range ids {
			var m Message
			if err := getJSON(b, id, &m); err != nil {
				continue // already gone
			}
			// Re-checked inside the write: the read above is a snapshot.
			if m.State != StateDone || !m.UpdatedAt.Before(cutoff) {
				continue
			}
			if err := s.dropBody(tx, &m, &o.after); err != nil {
				return err
			}
			if err := unindexMessage(tx, &m); err != nil {
				return err
			}
			if err := unindexUpstreamIDs(tx, &m); err != nil {
				return err
			}
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
			deleted++
		}
		return nil
	}
	if err := s.submit(o); err != nil {
		return 0, "", err
	}
	return deleted, next, nil
}

// SweepBodies deletes up to limit inline message bodies of messages that
// finished before cutoff, and bodies whose record is gone, looking at IDs
// above after; next is where to resume ("" when done). A finished
// message's record moves to its day file a minute after it finished, but
// its body stays in the main file until this sweep ([retention] body),
// so most bodies it deletes are of moved records. The bodies bucket holds
// the live queue and the last [retention] body of finished mail, hence
// the cursor: a long queue must not hide what lies behind it.
//
// A message is accepted (its ID's time) before it finishes, so the walk
// ends at the first ID accepted at or after cutoff, as SweepMessages'
// does. (Before, it went on through every body of the retention window,
// and looked each one up in the day files, on every pass.) Each call
// deletes at most limit bodies, counting those of moved records, in one
// commit that acceptance writes share.
func (s *Store) SweepBodies(cutoff time.Time, after string, limit int) (n int, next string, err error) {
	floor := []byte(idFloor(PrefixMessage, cutoff))
	var ids, moved []string
	err = s.view(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(bMessages)
		c := tx.Bucket(bBodies).Cursor()
		k, _ := c.First()
		if after != "" {
			if k, _ = c.Seek([]byte(after)); string(k) == after {
				k, _ = c.Next()
			}
		}
		visited := 0
		for ; k != nil; k, _ = c.Next() {
			if bytes.HasPrefix(k, []byte(PrefixMessage)) && bytes.Compare(k, floor) >= 0 {
				break // accepted at or after cutoff: none finished before it
			}
			if visited == sweepVisitMax || len(ids)+len(moved) == limit {
				return nil
			}
			visited++
			next = string(k)
			var m Message
			err := getJSON(msgs, string(k), &m)
			if errors.Is(err, ErrNotFound) {
				moved = append(moved, string(k)) // or gone: the day files say
			} else if err == nil && m.State == StateDone && m.UpdatedAt.Before(cutoff) {
				ids = append(ids, string(k))
			}
		}
		next = ""
		return nil
	})
	if err != nil {
		return 0, "", err
	}
	// A finished message's record moves to its day file while its body
	// stays here until the body retention.
	for _, id := range moved {
		m, err := s.historyMessage(id)
		if errors.Is(err, ErrNotFound) || err == nil && m.State == StateDone && m.UpdatedAt.Before(cutoff) {
			ids = append(ids, id)
		} else if err != nil {
			return 0, "", err
		}
	}
	if len(ids) == 0 {
		return 0, next, nil
	}
	if sweepBodiesHook != nil {
		sweepBodiesHook()
	}
	// Re-checked inside the write: a record brought back from its day
	// file (a late write, a message queued again) is in the main file
	// again before its day copy goes, so one the lookups above missed in
	// both is seen here and keeps its body unless it is done and old.
	deleted := 0
	err = s.update(func(tx *bolt.Tx) error {
		deleted = 0 // the function may run again
		msgs := tx.Bucket(bMessages)
		for _, id := range ids {
			if raw := msgs.Get([]byte(id)); raw != nil {
				var m Message
				if jsonUnmarshal(raw, &m) != nil || m.State != StateDone || !m.UpdatedAt.Before(cutoff) {
					continue // an unreadable record keeps its body, as in the reads above
				}
			}
			if err := deleteBody(tx, id); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		return 0, "", err
	}
	return deleted, next, nil
}

// sweepBodiesHook, when set (tests only), runs between SweepBodies' reads
// and its write.
var sweepBodiesHook func()

// SweepSpooled removes spool files of messages that finished before
// cutoff (a crash between a message's last commit and the file's removal
// leaves one behind), and files whose record went with its day file. A
// recent file without a record is left alone: it may belong to a message
// whose DATA is still streaming; SweepSpool clears those at start.
func (s *Store) SweepSpooled(cutoff time.Time) (int, error) {
	entries, err := os.ReadDir(s.spoolDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !ValidID(PrefixMessage, e.Name()) {
			continue
		}
		// Accepted at or after cutoff, so finished after it if at all:
		// not looked up (the spool holds the last [retention] body of
		// large mail, whose records are mostly in day files).
		if t, ok := idTime(PrefixMessage, e.Name()); ok && !t.Before(cutoff) {
			continue
		}
		m, err := s.Message(e.Name())
		switch {
		case errors.Is(err, ErrNotFound):
			// Its record went with its day file (DropHistory). A file
			// whose DATA is still streaming has an ID of now, not one
			// older than the cutoff.
			if t, ok := idTime(PrefixMessage, e.Name()); !ok || !t.Before(cutoff.Add(-seekSlack)) {
				continue
			}
		case err != nil || m.State != StateDone || !m.UpdatedAt.Before(cutoff):
			continue
		}
		if os.Remove(filepath.Join(s.spoolDir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
