package store

import (
	"bytes"
	"encoding/binary"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smtpmux/smtpmux/internal/state"
)

// Suppression list (SPEC §13). One bucket holds every team's entries,
// keyed team ID ‖ 0x00 ‖ lower-cased address, so a team's list is a
// prefix seek that reads only its own keys (as the team indexes of
// team_records.go), and the check at RCPT is one Get. Entries are not
// versioned: an address is on the list or not.
var (
	bSuppressions = []byte("suppressions") // team ‖ 0x00 ‖ lower(address) → Suppression
	// bSoftBounces counts soft bounces in a row per recipient: team ‖
	// 0x00 ‖ lower(address) → be32. A delivery to the address deletes it.
	bSoftBounces = []byte("soft_bounces")
)

// Reasons an address is suppressed.
const (
	SuppressHardBounce  = "hard_bounce"
	SuppressComplaint   = "complaint"
	SuppressSoftBounces = "soft_bounces" // DefaultSoftBounceLimit in a row
	SuppressManual      = "manual"
)

// DefaultSoftBounceLimit is how many soft bounces in a row suppress an
// address when the store is opened without WithSoftBounceLimit.
const DefaultSoftBounceLimit = 3

// Suppression is one suppressed recipient of a team.
type Suppression struct {
	TeamID  string `json:"team_id"`
	Address string `json:"address"`
	// Reason is one of the Suppress* constants.
	Reason string `json:"reason"`
	// Source is where the signal came from: smtp (a synchronous reply),
	// dsn, arf, ses, or api (a manual entry).
	Source    string `json:"source"`
	MessageID string `json:"message_id,omitempty"`
	// Detail is the diagnostic (bounce), feedback type (complaint) or the
	// operator's note (manual).
	Detail    string    `json:"detail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Feedback is one bounce or complaint recorded on a message's recipient.
// Writing a new one through UpdateMessage applies it to the suppression
// list in the same transaction (applyFeedback).
type Feedback struct {
	// Kind is "bounce" or "complaint".
	Kind string `json:"kind"`
	// Type is hard or soft for a bounce, the ARF feedback type for a
	// complaint ("abuse").
	Type string `json:"type,omitempty"`
	// Source: smtp, dsn, arf or ses.
	Source string `json:"source"`
	// Status is the RFC 3463 code ("5.1.1"), Diagnostic the upstream's
	// words (RFC 3464 Diagnostic-Code or the SMTP reply).
	Status     string    `json:"status,omitempty"`
	Diagnostic string    `json:"diagnostic,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	At         time.Time `json:"at"`
}

// Feedback kinds and bounce types.
const (
	FeedbackBounce    = "bounce"
	FeedbackComplaint = "complaint"
	BounceHard        = "hard"
	BounceSoft        = "soft"
)

// WithSoftBounceLimit sets how many soft bounces in a row suppress an
// address (default DefaultSoftBounceLimit; below 1 means never).
func WithSoftBounceLimit(n int) Option { return func(o *openOptions) { o.softLimit = n } }

func suppressionKey(teamID, addr string) []byte {
	return []byte(teamID + "\x00" + strings.ToLower(addr))
}

// Suppressed returns teamID's entry for addr, or nil when the address is
// not suppressed. Addresses compare case-insensitively.
func (s *Store) Suppressed(teamID, addr string) (*Suppression, error) {
	var out *Suppression
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bSuppressions).Get(suppressionKey(teamID, addr))
		if v == nil {
			return nil
		}
		out = new(Suppression)
		return jsonUnmarshal(v, out)
	})
	return out, err
}

// AddSuppression puts sup on its team's list. An address already listed
// keeps its first entry, which is returned with created false.
func (s *Store) AddSuppression(sup *Suppression) (cur *Suppression, created bool, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		cur, created, err = putSuppression(tx, sup)
		return err
	})
	return cur, created, err
}

func putSuppression(tx *bolt.Tx, sup *Suppression) (*Suppression, bool, error) {
	b := tx.Bucket(bSuppressions)
	k := suppressionKey(sup.TeamID, sup.Address)
	if v := b.Get(k); v != nil {
		var cur Suppression
		if err := jsonUnmarshal(v, &cur); err != nil {
			return nil, false, err
		}
		return &cur, false, nil
	}
	if err := tx.Bucket(bSoftBounces).Delete(k); err != nil {
		return nil, false, err
	}
	return sup, true, putJSON(b, string(k), sup)
}

// DeleteSuppression removes addr from teamID's list (ErrNotFound if it is
// not there), and forgets its soft bounces.
func (s *Store) DeleteSuppression(teamID, addr string) error {
	return s.update(func(tx *bolt.Tx) error {
		k := suppressionKey(teamID, addr)
		b := tx.Bucket(bSuppressions)
		if b.Get(k) == nil {
			return ErrNotFound
		}
		if err := tx.Bucket(bSoftBounces).Delete(k); err != nil {
			return err
		}
		return b.Delete(k)
	})
}

// suppressionScanMax bounds the entries one Suppressions call reads: a
// search that matches little would otherwise walk the team's whole list
// (which any root key can grow without end) in every request. A variable
// so that tests can lower it.
var suppressionScanMax = 4000

// Suppressions returns up to limit of teamID's entries in address order,
// after the address after (exclusive) and containing search (lower-case
// substring of the address; "" for all). It reads only the team's keys,
// and no more than suppressionScanMax of them: next, when not "", is the
// address to continue after (more entries may follow; a page cut short by
// the bound may hold fewer than limit, even none).
func (s *Store) Suppressions(teamID, after, search string, limit int) (out []*Suppression, next string, err error) {
	prefix := teamPrefix(teamID)
	search = strings.ToLower(search)
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bSuppressions).Cursor()
		start := prefix
		if after != "" {
			start = append(suppressionKey(teamID, after), 0)
		}
		scanned, last := 0, ""
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if scanned == suppressionScanMax {
				next = last // the bound: go on after what was read
				return nil
			}
			scanned++
			addr := string(k[len(prefix):])
			if search != "" && !strings.Contains(addr, search) {
				last = addr
				continue
			}
			if len(out) == limit {
				next = last // a further match exists
				return nil
			}
			var sup Suppression
			if err := jsonUnmarshal(v, &sup); err != nil {
				return err
			}
			out = append(out, &sup)
			last = addr
		}
		return nil
	})
	return out, next, err
}

// feedbackMark is what applyFeedback compares against: per recipient, how
// many feedback entries it had and whether it was sent.
type feedbackMark struct {
	n    int
	sent bool
}

func markFeedback(m *Message) []feedbackMark {
	out := make([]feedbackMark, len(m.Recipients))
	for i, r := range m.Recipients {
		out[i] = feedbackMark{n: len(r.Feedback), sent: r.Status == state.MessageSent}
	}
	return out
}

// applyFeedback brings the suppression list in line with what an update
// of m added: a hard bounce or complaint suppresses the recipient, a soft
// bounce counts toward softLimit in a row, a delivery clears the count.
// It runs in the message's transaction, so a recorded bounce and its
// suppression are durable together.
func applyFeedback(tx *bolt.Tx, before []feedbackMark, m *Message, softLimit int) error {
	soft := tx.Bucket(bSoftBounces)
	for i := range m.Recipients {
		r := &m.Recipients[i]
		var was feedbackMark
		if i < len(before) {
			was = before[i]
		}
		k := suppressionKey(m.TeamID, r.Address)
		if r.Status == state.MessageSent && !was.sent {
			if err := soft.Delete(k); err != nil {
				return err
			}
		}
		for _, f := range r.Feedback[min(was.n, len(r.Feedback)):] {
			sup := &Suppression{TeamID: m.TeamID, Address: strings.ToLower(r.Address), Source: f.Source,
				MessageID: m.ID, Detail: f.Diagnostic, CreatedAt: f.At}
			switch {
			case f.Kind == FeedbackComplaint:
				sup.Reason, sup.Detail = SuppressComplaint, f.Type
			case f.Kind == FeedbackBounce && f.Type == BounceHard:
				sup.Reason = SuppressHardBounce
			case f.Kind == FeedbackBounce && f.Type == BounceSoft:
				n := uint32(1)
				if v := soft.Get(k); len(v) == 4 {
					n += binary.BigEndian.Uint32(v)
				}
				if softLimit < 1 || int(n) < softLimit {
					if err := soft.Put(k, binary.BigEndian.AppendUint32(nil, n)); err != nil {
						return err
					}
					continue
				}
				sup.Reason = SuppressSoftBounces
			default:
				continue
			}
			if _, _, err := putSuppression(tx, sup); err != nil {
				return err
			}
		}
	}
	return nil
}
