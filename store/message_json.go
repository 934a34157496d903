package store

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// encodeMessage returns exactly the bytes json.Marshal(m) does, written
// without reflection: every record is encoded at enqueue, at the claim and
// at the result, and encoding/json spent most of that walking the struct
// by reflection and re-checking each time.Time it had just formatted.
//
// It is held to json.Marshal by TestEncodeMessageAsJSON, which fills every
// field by reflection: a field added to Message, Recipient, Attempt,
// Feedback or Scope and not here fails that test rather than being dropped
// from the record. Anything json.Marshal would refuse (a time outside
// years 0–9999 or with an offset of a day or more, invalid raw JSON) is
// handed to json.Marshal for its error.
func encodeMessage(m *Message) ([]byte, error) {
	e := msgEncoder{b: make([]byte, 0, sizeHint(m))}
	e.message(m)
	if e.bad {
		return json.Marshal(m)
	}
	return e.b, nil
}

// sizeHint is about what m encodes to, so the buffer grows rarely: the
// routing explanations are most of a record with attempts.
func sizeHint(m *Message) int {
	n := 384 + len(m.Waiting) + 128*len(m.Recipients)
	for i := range m.Attempts {
		n += 256 + len(m.Attempts[i].Routing)
	}
	return n
}

// msgEncoder appends one record; bad notes a value only json.Marshal
// may judge.
type msgEncoder struct {
	b   []byte
	bad bool
}

// key writes `,"name":` (without the comma for the first field).
func (e *msgEncoder) key(k string) {
	if c := e.b[len(e.b)-1]; c != '{' {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

func (e *msgEncoder) str(k, v string) { e.key(k); e.b = appendJSONString(e.b, v) }
func (e *msgEncoder) int(k string, v int64) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
}
func (e *msgEncoder) strOmit(k, v string) {
	if v != "" {
		e.str(k, v)
	}
}
func (e *msgEncoder) intOmit(k string, v int64) {
	if v != 0 {
		e.int(k, v)
	}
}
func (e *msgEncoder) boolOmit(k string, v bool) {
	if v {
		e.key(k)
		e.b = append(e.b, "true"...)
	}
}

// time writes t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds).
func (e *msgEncoder) time(k string, t time.Time) {
	e.key(k)
	e.timeValue(t)
}

func (e *msgEncoder) timeValue(t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		e.bad = true
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		e.bad = true
	}
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

// raw writes a json.RawMessage as encoding/json does: compacted with
// <, >, & and U+2028/U+2029 escaped, and refused when invalid.
func (e *msgEncoder) raw(k string, v json.RawMessage) {
	if len(v) == 0 {
		return
	}
	e.key(k)
	if plainJSON(v) {
		// Nothing to compact or escape (the explanations the relay
		// stores): valid bytes go as they are, without two copies.
		if !json.Valid(v) {
			e.bad = true
			return
		}
		e.b = append(e.b, v...)
		return
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		e.bad = true
		return
	}
	var esc bytes.Buffer
	json.HTMLEscape(&esc, buf.Bytes())
	e.b = append(e.b, esc.Bytes()...)
}

// plainJSON reports whether v has no byte compacting or HTML escaping
// could change: no whitespace or control byte, no <, > or &, and no 0xE2
// (the lead byte of U+2028 and U+2029, and of other runes, which then take
// the long way).
func plainJSON(v []byte) bool {
	for _, c := range v {
		if c <= ' ' || c == '<' || c == '>' || c == '&' || c == 0xE2 {
			return false
		}
	}
	return true
}

func (e *msgEncoder) timeMap(k string, m map[string]time.Time) {
	if len(m) == 0 {
		return
	}
	e.key(k)
	keys := make([]string, 0, len(m))
	for id := range m {
		keys = append(keys, id)
	}
	slices.Sort(keys)
	e.b = append(e.b, '{')
	for i, id := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = appendJSONString(e.b, id)
		e.b = append(e.b, ':')
		e.timeValue(m[id])
	}
	e.b = append(e.b, '}')
}

func (e *msgEncoder) strings(k string, v []string) {
	if len(v) == 0 {
		return
	}
	e.key(k)
	e.b = append(e.b, '[')
	for i, s := range v {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = appendJSONString(e.b, s)
	}
	e.b = append(e.b, ']')
}

func (e *msgEncoder) message(m *Message) {
	e.b = append(e.b, '{')
	e.str("id", m.ID)
	e.str("team_id", m.TeamID)
	e.str("credential_id", m.CredentialID)
	e.strOmit("mailbox_id", m.MailboxID)
	e.str("source", m.Source)
	e.key("scope")
	e.b = append(e.b, '{')
	e.str("type", m.Scope.Type)
	e.strings("provider_public_ids", m.Scope.ProviderPublicIDs)
	e.strings("group_public_ids", m.Scope.GroupPublicIDs)
	e.b = append(e.b, '}')
	e.str("from", m.From)
	e.key("recipients")
	if m.Recipients == nil {
		e.b = append(e.b, "null"...)
	} else {
		encodeList(e, m.Recipients, e.recipient)
	}
	e.int("size", m.Size)
	e.intOmit("managed_reserved", int64(m.ManagedReserved))
	e.strOmit("managed_provider_id", m.ManagedProviderID)
	if !m.ManagedReservedAt.IsZero() {
		e.time("managed_reserved_at", m.ManagedReservedAt)
	}
	e.boolOmit("spooled", m.Spooled)
	e.strOmit("subject", m.Subject)
	e.strOmit("header_message_id", m.HeaderMessageID)
	e.str("status", string(m.Status))
	e.strOmit("reason", m.Reason)
	e.str("state", m.State)
	e.time("next_attempt_at", m.NextAttemptAt)
	e.int("retries", int64(m.Retries))
	e.timeMap("auth_failed", m.AuthFailed)
	e.timeMap("avoid", m.Avoid)
	e.strOmit("sent_from_email", m.SentFromEmail)
	e.strOmit("failure_report_id", m.FailureReportID)
	e.raw("waiting", m.Waiting)
	if len(m.Attempts) > 0 {
		e.key("attempts")
		encodeList(e, m.Attempts, e.attempt)
	}
	e.time("created_at", m.CreatedAt)
	e.time("updated_at", m.UpdatedAt)
	e.b = append(e.b, '}')
}

func (e *msgEncoder) recipient(r *Recipient) {
	e.b = append(e.b, '{')
	e.str("address", r.Address)
	e.str("status", string(r.Status))
	e.intOmit("code", int64(r.Code))
	e.strOmit("reply", r.Reply)
	e.strOmit("provider_id", r.ProviderID)
	if r.UpdatedAt != nil {
		e.time("updated_at", *r.UpdatedAt)
	}
	e.boolOmit("soft", r.Soft)
	if len(r.Feedback) > 0 {
		e.key("feedback")
		encodeList(e, r.Feedback, e.feedback)
	}
	e.b = append(e.b, '}')
}

func (e *msgEncoder) feedback(f *Feedback) {
	e.b = append(e.b, '{')
	e.str("kind", f.Kind)
	e.strOmit("type", f.Type)
	e.str("source", f.Source)
	e.strOmit("status", f.Status)
	e.strOmit("diagnostic", f.Diagnostic)
	e.strOmit("provider_id", f.ProviderID)
	e.time("at", f.At)
	e.b = append(e.b, '}')
}

// encodeList writes items as a JSON array, each by one.
func encodeList[T any](e *msgEncoder, items []T, one func(*T)) {
	e.b = append(e.b, '[')
	for i := range items {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		one(&items[i])
	}
	e.b = append(e.b, ']')
}

func (e *msgEncoder) attempt(a *Attempt) {
	e.b = append(e.b, '{')
	e.int("n", int64(a.N))
	e.strOmit("provider_id", a.ProviderID)
	e.strOmit("provider_type", a.ProviderType)
	e.time("started_at", a.StartedAt)
	e.int("duration_ms", a.DurationMS)
	e.str("status", string(a.Status))
	e.strOmit("class", a.Class)
	e.intOmit("code", int64(a.Code))
	e.strOmit("reply", a.Reply)
	e.strOmit("upstream_id", a.UpstreamID)
	e.boolOmit("data_started", a.DataStarted)
	e.strOmit("sent_from", a.SentFrom)
	e.raw("routing", a.Routing)
	e.b = append(e.b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with its default HTML
// escaping: <, > and & as \u003c…, control bytes as \n, \t… or \u00XX,
// invalid UTF-8 as \ufffd, and U+2028/U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
