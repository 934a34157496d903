package store

import (
	"maps"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// The history keys of schema 6 as they were first built (two maps of
// concatenated strings): the stored counters and index entries of every
// existing file have exactly these keys, so the allocation-light builder
// (history_keys.go) must produce the same ones, byte for byte.
func refFilterKeys(m *Message) map[string]bool {
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

func refMessageCounts(m *Message) map[string]int64 {
	out := map[string]int64{}
	team, status := m.TeamID+"\x00", string(m.Status)
	hour, minute := hourKey(m.CreatedAt), be64Key(m.CreatedAt.Truncate(time.Minute).Unix())
	add := func(kind, mid, at, rest string) {
		out[team+kind+mid+at+rest]++
		out[team+minuteKind(kind)+mid+minute+rest]++
	}
	add(countStatus, "", hour, status)
	seen := map[string]bool{}
	note := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			add(countProvider, p+"\x00", hour, status)
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
		case rs == string(state.MessageSent):
			at := m.UpdatedAt
			if r.UpdatedAt != nil {
				at = *r.UpdatedAt
			}
			add(countSentDay, "", hour, p+"\x00"+be64Key(utcDay(at).Unix()))
			fallthrough
		case rs == string(state.MessagePending) || rs == string(state.MessageFailed) || rs == string(state.MessageRejected):
			add(countRecipient, "", hour, p+"\x00"+rs)
		}
		for _, f := range feedbackCounted(r) {
			fp := f.ProviderID
			if fp == "" {
				fp = p
			}
			add(countFeedback, "", hour, fp+"\x00"+feedbackCountType(f))
		}
	}
	return out
}

// TestHistoryKeysUnchanged: the counter and index keys of records in
// every state, with repeated providers, several recipients and feedback,
// are those of the first builder (refMessageCounts, refFilterKeys).
func TestHistoryKeysUnchanged(t *testing.T) {
	created := time.Date(2026, 12, 7, 9, 41, 7, 0, time.UTC)
	later := created.Add(26 * time.Hour)
	att := func(p string) Attempt { return Attempt{N: 1, ProviderID: p, StartedAt: created} }
	rcpt := func(addr string, st state.Message, p string) Recipient {
		return Recipient{Address: addr, Status: st, ProviderID: p}
	}
	cases := map[string]*Message{
		"queued": {Status: state.MessagePending, Recipients: []Recipient{rcpt("a@x", state.MessagePending, "")}},
		"claimed": {Status: state.MessagePending, Attempts: []Attempt{att("prov_1")},
			Recipients: []Recipient{rcpt("a@x", state.MessagePending, ""), rcpt("b@x", state.MessagePending, "")}},
		"sent, one updated later": {Status: state.MessageSent, Attempts: []Attempt{att("prov_1")}, UpdatedAt: created.Add(time.Minute),
			Recipients: []Recipient{rcpt("a@x", state.MessageSent, "prov_1"), {Address: "b@x", Status: state.MessageSent, ProviderID: "prov_1", UpdatedAt: &later}}},
		"two providers, repeated": {Status: state.MessageFailed, Attempts: []Attempt{att("prov_2"), att("prov_1"), att("prov_2"), att("")},
			Recipients: []Recipient{rcpt("a@x", state.MessageRejected, "prov_1"), rcpt("b@x", state.MessageFailed, ""), rcpt("c@x", state.MessageSuppressed, ""),
				rcpt("d@x", state.MessageSent, "prov_3"), rcpt("e@x", state.MessageSent, "prov_3")}},
		"feedback": {Status: state.MessageSent, Attempts: []Attempt{att("prov_1")},
			Recipients: []Recipient{{Address: "a@x", Status: state.MessageRejected, ProviderID: "prov_1",
				Feedback: []Feedback{{Kind: FeedbackBounce, Type: "hard"}, {Kind: FeedbackBounce, Type: "soft"}, {Kind: FeedbackComplaint, Type: "abuse", ProviderID: "prov_9"}}},
				{Address: "b@x", Status: state.MessageSent, ProviderID: "prov_1", Feedback: []Feedback{{Kind: FeedbackComplaint, Type: "abuse"}}}}},
		"never attempted, failed": {Status: state.MessageFailed, Recipients: []Recipient{rcpt("a@x", state.MessageFailed, "")}},
		"no recipients":           {Status: state.MessageSuppressed},
	}
	for name, m := range cases {
		m.ID, m.TeamID, m.CreatedAt = "eml_0123456789", "team_abc", created
		if m.UpdatedAt.IsZero() {
			m.UpdatedAt = created
		}
		if got, want := messageCounts(m), refMessageCounts(m); !maps.Equal(got, want) {
			t.Errorf("%s: counter keys\n got %v\nwant %v", name, got, want)
		}
		if got, want := filterKeys(m), refFilterKeys(m); !maps.Equal(got, want) {
			t.Errorf("%s: index keys\n got %v\nwant %v", name, got, want)
		}
	}
}
