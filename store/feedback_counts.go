package store

import (
	"bytes"
	"time"
)

// feedbackCounted are the entries of r that count toward deliverability
// rates: its first bounce and its first complaint. A recipient counts
// once per kind however many reports arrive about it.
func feedbackCounted(r *Recipient) []Feedback {
	var out []Feedback
	var bounce, complaint bool
	for _, f := range r.Feedback {
		switch {
		case f.Kind == FeedbackBounce && !bounce:
			bounce = true
			out = append(out, f)
		case f.Kind == FeedbackComplaint && !complaint:
			complaint = true
			out = append(out, f)
		}
	}
	return out
}

// feedbackCountType is the counter's type of f: hard, soft or complaint.
func feedbackCountType(f Feedback) string {
	if f.Kind == FeedbackComplaint {
		return "complaint"
	}
	return f.Type
}

// FeedbackCounts calls fn with the number of recipients of teamID's
// messages created in [from, to) (rounded down to their minute; a zero to
// is open) that bounced (typ hard or soft) or complained (typ complaint),
// by provider, per counted span as StatusCounts. The counters are kept as
// mail flows (messageCounts), so this reads only the team's counter keys.
func (s *Store) FeedbackCounts(teamID string, from, to time.Time, fn func(at time.Time, providerID, typ string, n int64)) error {
	return s.readCounts(teamID, countFeedback, "", from, to, func(at time.Time, rest []byte, n int64) {
		if i := bytes.IndexByte(rest, 0); i >= 0 {
			fn(at, string(rest[:i]), string(rest[i+1:]), n)
		}
	})
}

// RecipientCountsBetween is RecipientCounts over [from, to).
func (s *Store) RecipientCountsBetween(teamID string, from, to time.Time, fn func(at time.Time, providerID, status string, n int64)) error {
	return s.readCounts(teamID, countRecipient, "", from, to, func(at time.Time, rest []byte, n int64) {
		if i := bytes.IndexByte(rest, 0); i >= 0 {
			fn(at, string(rest[:i]), string(rest[i+1:]), n)
		}
	})
}
