package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// Queue states of a message: queued messages have a due-index entry,
// in-flight ones an in-flight entry (so a restart finds interrupted
// attempts), done ones neither.
const (
	StateQueued   = "queued"
	StateInflight = "inflight"
	StateDone     = "done"
)

// Recipient is one envelope recipient and what became of it.
type Recipient struct {
	Address    string        `json:"address"`
	Status     state.Message `json:"status"`
	Code       int           `json:"code,omitempty"`
	Reply      string        `json:"reply,omitempty"`
	ProviderID string        `json:"provider_id,omitempty"`
	UpdatedAt  *time.Time    `json:"updated_at,omitempty"`
	// Soft is set while the recipient's last failure was a temporary one
	// of its own (recipient scope): if retries run out, a soft bounce.
	Soft bool `json:"soft,omitempty"`
	// Feedback lists the bounces and complaints recorded against this
	// recipient, synchronous or not (suppressions.go).
	Feedback []Feedback `json:"feedback,omitempty"`
}

// Attempt is one delivery try. It is written (status in_progress) before
// any network I/O and completed afterwards.
type Attempt struct {
	N            int           `json:"n"`
	ProviderID   string        `json:"provider_id,omitempty"`
	ProviderType string        `json:"provider_type,omitempty"`
	StartedAt    time.Time     `json:"started_at"`
	DurationMS   int64         `json:"duration_ms"`
	Status       state.Attempt `json:"status"`
	Class        string        `json:"class,omitempty"`
	Code         int           `json:"code,omitempty"`
	Reply        string        `json:"reply,omitempty"`
	UpstreamID   string        `json:"upstream_id,omitempty"`
	// DataStarted is set, durably, just before the body was handed to the
	// upstream: after a crash such an attempt is uncertain, not resent.
	DataStarted bool `json:"data_started,omitempty"`
	// SentFrom is the From address this attempt's bytes carried.
	SentFrom string `json:"sent_from,omitempty"`
	// Routing is the routing explanation of this attempt's pick, kept as
	// opaque JSON so this package need not know its shape.
	Routing json.RawMessage `json:"routing,omitempty"`
}

// Message is a queued or finished message. The body is stored separately.
type Message struct {
	ID           string `json:"id"`
	TeamID       string `json:"team_id"`
	CredentialID string `json:"credential_id"`
	MailboxID    string `json:"mailbox_id,omitempty"`
	Source       string `json:"source"` // smtp | http
	// Scope is the sending credential's scope when the message was
	// accepted; routing honours it on every attempt.
	Scope      Scope       `json:"scope"`
	From       string      `json:"from"`
	Recipients []Recipient `json:"recipients"`
	Size       int64       `json:"size"`
	// ManagedReserved counts recipients reserved on ManagedProviderID's
	// daily limit at acceptance, at ManagedReservedAt (whose UTC day they
	// count in: over SMTP, the first RCPT), handed over at the first attempt.
	ManagedReserved   int       `json:"managed_reserved,omitempty"`
	ManagedProviderID string    `json:"managed_provider_id,omitempty"`
	ManagedReservedAt time.Time `json:"managed_reserved_at,omitzero"`
	// Spooled is true when the body is a spool file, not a bbolt value.
	Spooled         bool   `json:"spooled,omitempty"`
	Subject         string `json:"subject,omitempty"`
	HeaderMessageID string `json:"header_message_id,omitempty"`

	Status        state.Message `json:"status"`
	Reason        string        `json:"reason,omitempty"`
	State         string        `json:"state"`
	NextAttemptAt time.Time     `json:"next_attempt_at"`
	// Retries counts transient deferrals; it indexes the retry schedule.
	Retries int `json:"retries"`
	// AuthFailed maps providers that failed authentication for this
	// message to when; each is tried at most once per message until an
	// operator reactivates it.
	AuthFailed map[string]time.Time `json:"auth_failed,omitempty"`
	// Avoid maps providers that just failed this message with a
	// connection or quota error to when the message may use them again.
	Avoid         map[string]time.Time `json:"avoid,omitempty"`
	SentFromEmail string               `json:"sent_from_email,omitempty"`
	// FailureReportID is the failure report (an RFC 3464 DSN to From)
	// enqueued for this message, set in the same transaction that
	// enqueues it (EnqueueFailureReport): at most one per message.
	FailureReportID string `json:"failure_report_id,omitempty"`
	// Waiting is the routing explanation of the last pick that found no
	// provider it could use yet (quota, breaker): why the message waits.
	// Cleared when an attempt starts.
	Waiting   json.RawMessage `json:"waiting,omitempty"`
	Attempts  []Attempt       `json:"attempts,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// ReservedAt is when the message's managed-account reservations were
// made (records written before ManagedReservedAt: its creation).
func (m *Message) ReservedAt() time.Time {
	if m.ManagedReservedAt.IsZero() {
		return m.CreatedAt
	}
	return m.ManagedReservedAt
}

// PendingRecipients returns the addresses still to be delivered.
func (m *Message) PendingRecipients() []string {
	var out []string
	for _, r := range m.Recipients {
		if r.Status == state.MessagePending {
			out = append(out, r.Address)
		}
	}
	return out
}

// PendingCount is len(m.PendingRecipients()) without building the list:
// several per-message checks only ask whether any (or how many) remain.
func (m *Message) PendingCount() int {
	n := 0
	for i := range m.Recipients {
		if m.Recipients[i].Status == state.MessagePending {
			n++
		}
	}
	return n
}

func dueKey(at time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(at.UnixNano()))
	return append(k, id...)
}

// Enqueue durably stores a new message and its body and makes it due at
// m.NextAttemptAt. It returns after the fsync.
//
// A spooled message (m.Spooled) passes a nil body: its spool file was
// written and finished by the caller.
func (s *Store) Enqueue(m *Message, body []byte) error {
	m.State = StateQueued
	return s.submit(&op{done: make(chan error, 1), syncSpool: m.Spooled, fn: func(tx *bolt.Tx) error {
		data, err := putNewMessage(tx, m, body)
		if err == nil {
			// The scheduler reads it next (Message), then claims it:
			// neither needs to decode what was just encoded. A clone,
			// since the caller keeps m.
			s.recs.keep(m.ID, data, m.clone())
		}
		return err
	}})
}

// EnqueueFailureReport durably enqueues report, the failure report of the
// finished message origID, and records it on the original in the same
// transaction: ErrConflict if the original already has one (a second
// call, a retried write), so a report is never sent twice.
func (s *Store) EnqueueFailureReport(origID string, report *Message, body []byte) error {
	report.State = StateQueued
	if err := s.restoreIfMoved(origID); err != nil {
		return err
	}
	return s.submit(&op{done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
		var orig Message
		if err := getJSON(tx.Bucket(bMessages), origID, &orig); err != nil {
			return err
		}
		if orig.FailureReportID != "" {
			return ErrConflict
		}
		orig.FailureReportID = report.ID
		if err := putJSON(tx.Bucket(bMessages), origID, &orig); err != nil {
			return err
		}
		_, err := putNewMessage(tx, report, body)
		return err
	}})
}

// RecordFinished durably stores a message accepted and finished at once
// (every recipient suppressed): its record and indexes, no body and no
// due entry, since nothing will be sent.
func (s *Store) RecordFinished(m *Message) error {
	m.State = StateDone
	return s.submit(&op{done: make(chan error, 1), fn: func(tx *bolt.Tx) error {
		_, err := putNewMessage(tx, m, nil)
		return err
	}})
}

// putNewMessage writes a new queued (or, RecordFinished, done) message, its inline body and every
// index that refers to it, inside tx. It returns the record as stored
// (not to be modified: the transaction holds it until the commit).
func putNewMessage(tx *bolt.Tx, m *Message, body []byte) ([]byte, error) {
	data, err := encodeMessage(m)
	if err != nil {
		return nil, err
	}
	if err := tx.Bucket(bMessages).Put([]byte(m.ID), data); err != nil {
		return nil, err
	}
	if !m.Spooled && m.State != StateDone {
		if err := putBody(tx, m.ID, body); err != nil {
			return nil, err
		}
	}
	if err := syncManagedReserved(tx, m, false); err != nil {
		return nil, err
	}
	if err := indexNewMessage(tx, m); err != nil {
		return nil, err
	}
	if m.State == StateDone {
		return data, markFinished(tx, m)
	}
	return data, tx.Bucket(bDue).Put(dueKey(m.NextAttemptAt, m.ID), nil)
}

// Message returns a message record, from the main file or, once it has
// moved there, its day file (history.go). A queued one is remembered as
// decoded (recCache) for the write that usually follows, the claim; a
// finished one (the only kind that moves) never is. A record whose stored
// bytes are the ones cached (Enqueue keeps what it wrote) is not decoded.
func (s *Store) Message(id string) (*Message, error) {
	m, err := s.message(id)
	if !errors.Is(err, ErrNotFound) {
		return m, err
	}
	// A move deletes from the main file only after the day file has the
	// record, so a miss in the main file finds it there; but a restore (a
	// late write to a finished message) puts it in the main file before it
	// deletes it from the day file: one that ran between the two reads
	// left it in the main file, read again here.
	return s.message(id)
}

func (s *Store) message(id string) (*Message, error) {
	var m Message
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bMessages).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		if c := s.recs.get(id, v); c != nil {
			m = *c // as Enqueue (or the last write) encoded these bytes
			return nil
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		if m.State == StateQueued {
			s.recs.put(id, v, &m)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		if messageMissHook != nil {
			messageMissHook(id)
		}
		return s.historyMessage(id)
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// messageMissHook, when set (tests only), runs between message's miss in
// the main file and its look in the day files.
var messageMissHook func(id string)

// restoreIfMoved brings message id back into the main file if it moved to
// its day file, so that a write finds it (a late bounce, a failure
// report). A message in neither stays missing: the write's ErrNotFound.
func (s *Store) restoreIfMoved(id string) error {
	var inMain bool
	if err := s.view(func(tx *bolt.Tx) error {
		inMain = tx.Bucket(bMessages).Get([]byte(id)) != nil
		return nil
	}); err != nil || inMain {
		return err
	}
	_, err := s.restoreHistory(id)
	return err
}

// Body returns a copy of a message's inline bytes.
func (s *Store) Body(id string) ([]byte, error) {
	var out []byte
	err := s.readInline(id, func(n int) []byte { out = make([]byte, n); return out })
	return out, err
}

// readInline copies message id's inline body into the buffer buf(n)
// returns (n the body's length). A body of several pages is read from the
// file (readMapped), not through bbolt's memory map, so none of its pages
// become resident in this process.
func (s *Store) readInline(id string, buf func(n int) []byte) error {
	return s.view(func(tx *bolt.Tx) error {
		v := getBody(tx, id)
		if v == nil {
			return ErrNotFound
		}
		dst := buf(len(v))
		if !s.readMapped(tx, v, dst) {
			copy(dst, v)
		}
		return nil
	})
}

// UpdateMessage applies fn to the stored message and saves it, keeping the
// due and in-flight indexes consistent with the old and new State and
// NextAttemptAt. It returns the saved record after the fsync.
//
// A write that leaves the message waiting (waiting.go) goes through
// ParkMessage, so that a wake it raced is not lost.
func (s *Store) UpdateMessage(id string, fn func(*Message) error) (*Message, error) {
	return s.updateMessage(id, fn, nil, nil)
}

func (s *Store) updateMessage(id string, fn func(*Message) error, also func(*bolt.Tx) error, park *parking) (*Message, error) {
	out, err := s.updateMain(id, fn, also, park)
	// Finished and moved to its day file (a bounce or complaint that
	// came late): back to the main file, where writes happen, and again.
	// The mover may take it once more between the restore and the write
	// (it is listed again as of the restore, so only with a move delay
	// shorter than that gap), hence a few rounds.
	for try := 0; try < 3 && errors.Is(err, errNotInMain); try++ {
		if rerr := s.restoreIfMoved(id); rerr != nil {
			return nil, rerr
		}
		out, err = s.updateMain(id, fn, also, park)
	}
	return out, err
}

// errNotInMain is updateMain's ErrNotFound: the record is not in the main
// file (and fn did not run).
var errNotInMain = fmt.Errorf("%w: not in the main file", ErrNotFound)

// updateMain is updateMessage on the main file's copy.
func (s *Store) updateMain(id string, fn func(*Message) error, also func(*bolt.Tx) error, park *parking) (*Message, error) {
	var out Message
	o := &op{done: make(chan error, 1)}
	o.fn = func(tx *bolt.Tx) error {
		o.after = o.after[:0] // fn may run again after a sibling failed
		b := tx.Bucket(bMessages)
		var m Message
		if c := s.recs.take(id, b.Get([]byte(id))); c != nil {
			m = *c // the record as decoded by the read just before (Message)
		} else if err := getJSON(b, id, &m); err != nil {
			if errors.Is(err, ErrNotFound) {
				return errNotInMain
			}
			return err
		}
		oldState, oldDue, wasWaiting, wasReserved := m.State, dueAt(tx, &m), waits(&m), holdsReservation(&m)
		oldCounts, oldKeys, oldUp := countKeys(&m), indexKeys(&m), upstreamIDs(&m)
		defer oldCounts.release()
		defer oldKeys.release()
		marks := markFeedback(&m)
		if err := fn(&m); err != nil {
			return err
		}
		if err := applyFeedback(tx, marks, &m, s.softLimit); err != nil {
			return err
		}
		newCounts := countKeys(&m)
		defer newCounts.release()
		if err := moveCountKeys(tx, oldCounts, newCounts); err != nil {
			return err
		}
		if err := moveIndexKeys(tx, m.TeamID, m.ID, oldKeys, &m); err != nil {
			return err
		}
		if err := syncUpstreamIDs(tx, oldUp, &m); err != nil {
			return err
		}
		due := m.NextAttemptAt
		if park != nil && waits(&m) && wakeGen(tx, m.TeamID) != park.seen && park.now.Before(due) {
			due = park.now // a wake came after its pick: look again now
		}
		if err := reindex(tx, id, oldState, oldDue, m.State, due); err != nil {
			return err
		}
		if m.State == StateDone && oldState != StateDone {
			if err := markFinished(tx, &m); err != nil {
				return err
			}
		}
		if err := syncWaiting(tx, &m, wasWaiting, due); err != nil {
			return err
		}
		if err := syncManagedReserved(tx, &m, wasReserved); err != nil {
			return err
		}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		out = m
		data, err := encodeMessage(&m)
		if err != nil {
			s.recs.drop(id)
			return err
		}
		if err := b.Put([]byte(id), data); err != nil {
			s.recs.drop(id)
			return err
		}
		if m.State == StateDone {
			s.recs.drop(id) // rewritten, and the last write: nothing to keep
		} else {
			// A claimed (or deferred) record is written again by the
			// attempt's result: keep the decoded form of these bytes for
			// it. Should this transaction not commit, the stored bytes
			// differ and the entry is never used. The kept form is the
			// one just encoded, not a decode of it: its times may keep a
			// monotonic reading and their location, which no key or
			// comparison here depends on (keys use UTC and Unix times).
			s.recs.keep(id, data, m.clone())
		}
		return nil
	}
	if err := s.submit(o); err != nil {
		return nil, err
	}
	return &out, nil
}

func reindex(tx *bolt.Tx, id, oldState string, oldDue time.Time, newState string, newDue time.Time) error {
	due, inflight := tx.Bucket(bDue), tx.Bucket(bInflight)
	switch oldState {
	case StateQueued:
		if err := due.Delete(dueKey(oldDue, id)); err != nil {
			return err
		}
	case StateInflight:
		if err := inflight.Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bDataSent).Delete([]byte(id)); err != nil {
			return err
		}
	}
	switch newState {
	case StateQueued:
		return due.Put(dueKey(newDue, id), nil)
	case StateInflight:
		return inflight.Put([]byte(id), nil)
	}
	return nil
}

// Due returns up to limit IDs of queued messages due at or before now, in
// due order, skipping those skip reports true for; and the due time of the
// first queued message after now (zero if none), for the scheduler's timer.
//
// skip gets the ID as bytes valid only during the call (a string of it
// for every entry, kept or not, was most of the scheduler's allocations:
// each dispatch walks past every message it has started and not yet
// claimed); a lookup m[string(id)] does not copy it.
func (s *Store) Due(now time.Time, limit int, skip func(id []byte) bool) (ids []string, next time.Time, err error) {
	end := uint64(now.UnixNano())
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			at := binary.BigEndian.Uint64(k[:8])
			if at > end {
				next = time.Unix(0, int64(at))
				return nil
			}
			if skip != nil && skip(k[8:]) {
				continue
			}
			if len(ids) >= limit {
				return nil
			}
			ids = append(ids, string(k[8:]))
		}
		return nil
	})
	return ids, next, err
}

// DropStrayDue deletes the due entries of message id at or before upTo if
// the message is missing or not queued: such an entry is stray (the due
// index should only hold queued messages), and the scheduler, which reads
// nothing but this index, would otherwise find it due at every turn. A
// queued message's entries are left alone. It returns how many entries it
// deleted. Only entries up to upTo are looked at: the scheduler found the
// id due, so its entry is there, and the walk stays short.
func (s *Store) DropStrayDue(id string, upTo time.Time) (dropped int, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		dropped = 0
		var m Message
		switch err := getJSON(tx.Bucket(bMessages), id, &m); {
		case err == nil && m.State == StateQueued:
			return nil
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		end := uint64(upTo.UnixNano())
		var stray [][]byte
		c := tx.Bucket(bDue).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k[:8]) <= end; k, _ = c.Next() {
			if string(k[8:]) == id {
				stray = append(stray, bytes.Clone(k))
			}
		}
		for _, k := range stray {
			if err := tx.Bucket(bDue).Delete(k); err != nil {
				return err
			}
		}
		dropped = len(stray)
		return nil
	})
	return dropped, err
}

// Inflight lists messages whose attempt was in progress, i.e. after a
// crash the attempts that were interrupted.
func (s *Store) Inflight() ([]string, error) {
	var ids []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bInflight).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	return ids, err
}

// Depths counts what waits: queued and in-flight messages, and webhook
// deliveries pending (for the gauges at /metrics).
type Depths struct {
	Queued, InFlight, WebhookPending int
	// HistoryBacklog is the finished messages still in the main file,
	// waiting for the history mover; HistoryOldest when the oldest of
	// them finished (zero when none).
	HistoryBacklog int
	HistoryOldest  time.Time
}

// Depths reads the counts from the index buckets' statistics.
func (s *Store) Depths() (d Depths, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		d.Queued = tx.Bucket(bDue).Stats().KeyN
		d.InFlight = tx.Bucket(bInflight).Stats().KeyN
		d.WebhookPending = tx.Bucket(bWebhookDue).Stats().KeyN
		d.HistoryBacklog, d.HistoryOldest = historyBacklog(tx)
		// Counting walked every page of the indexes through the map
		// (150 MB resident with 100,000 queued): not worth keeping.
		dropMap(tx)
		return nil
	})
	return
}

var bDataSent = []byte("data_sent") // msg id → attempt number whose body went out

// MarkDataStarted durably records that attempt n of message id is about to
// hand its body to the upstream. It is a tiny write (no record rewrite)
// because it sits on every attempt's path; it is cleared when the attempt
// finishes.
func (s *Store) MarkDataStarted(id string, n int) error {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(n))
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bInflight).Get([]byte(id)) == nil {
			return ErrConflict // not in flight any more: the caller must not send
		}
		return tx.Bucket(bDataSent).Put([]byte(id), v[:])
	})
}

// DataStarted returns the attempt number MarkDataStarted recorded for an
// in-flight message, or 0.
func (s *Store) DataStarted(id string) (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bDataSent).Get([]byte(id)); len(v) == 4 {
			n = int(binary.BigEndian.Uint32(v))
		}
		return nil
	})
	return n, err
}
