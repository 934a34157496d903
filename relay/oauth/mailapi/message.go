// Package mailapi is what the HTTP mail API providers (relay/gmail,
// relay/outlook) share: fitting a relayed message to an API that sends as
// the connected account and delivers to the header recipients, calling the
// API with a bearer token (with one retry on a fresh token after a 401),
// and turning token and transport failures into relay.DeliveryErrors.
package mailapi

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/smtpmux/smtpmux/internal/mailhdr"
)

// Prepare rewrites msg for an API that sends as sendAs and delivers to
// the addresses in the To, Cc and Bcc headers rather than to an envelope
// (Gmail users.messages.send, Graph sendMail with MIME). Only header
// fields are rewritten, each in place; every other byte, the body
// included, is kept as it was.
//
//   - From becomes sendAs, keeping the display name (byte for byte when
//     the field is "name <addr>"): SPEC §6, OAuth accounts always send as
//     the authorised address. Sender is removed, since the account sends
//     on its own behalf. A From that already is sendAs is left untouched.
//   - The envelope recipients rcpts decide who receives the message, as
//     they do for SMTP: envelope recipients missing from To and Cc (an
//     SMTP client's Bcc) are put in a Bcc field, which Gmail and Graph
//     deliver to and strip; and addresses in To or Cc that are not in the
//     envelope are taken out of that field, because the API would
//     otherwise deliver to them too — a retry carrying only the recipients
//     still pending must not reach those already served. Fields that need
//     no change are kept byte for byte; a To or Cc field that cannot be
//     parsed is dropped (its recipients, if in the envelope, move to Bcc).
//   - Existing Bcc fields are replaced by the one computed above.
func Prepare(msg []byte, sendAs string, rcpts []string) ([]byte, error) {
	if a, err := mail.ParseAddress(sendAs); err != nil || a.Address != sendAs {
		return nil, errors.New("mailapi: invalid sending address " + sendAs)
	}
	if len(rcpts) == 0 {
		return nil, errors.New("mailapi: no recipients")
	}
	h, body := splitHeader(msg)
	eol := h.eol
	env := map[string]bool{}
	for _, r := range rcpts {
		env[strings.ToLower(r)] = true
	}
	visible := map[string]bool{}
	fromDone := false
	out := make([]field, 0, len(h.fields)+2)
	for _, f := range h.fields {
		switch f.name {
		case "from":
			if !fromDone {
				out = append(out, rewriteFrom(f, sendAs, eol))
				fromDone = true
			}
		case "sender", "bcc":
		case "to", "cc":
			if nf, ok := filterRecipients(f, env, visible, eol); ok {
				out = append(out, nf)
			}
		default:
			out = append(out, f)
		}
	}
	if !fromDone {
		// Appended, not prepended: a malformed header may begin with a
		// continuation line, which would fold into a field put before it.
		out = append(out, field{name: "from", raw: []byte("From: " + sendAs + eol)})
	}
	var bcc []string
	for _, r := range rcpts {
		if k := strings.ToLower(r); !visible[k] {
			visible[k] = true
			bcc = append(bcc, r)
		}
	}
	if len(bcc) > 0 {
		out = append(out, field{name: "bcc", raw: foldList("Bcc", bcc, eol)})
	}
	var b bytes.Buffer
	b.Grow(len(msg) + 64*len(bcc))
	for _, f := range out {
		b.Write(f.raw)
	}
	b.WriteString(eol)
	b.Write(body)
	return b.Bytes(), nil
}

// rewriteFrom returns the From field for sendAs with f's display name.
func rewriteFrom(f field, sendAs, eol string) field {
	v := strings.TrimSpace(f.value())
	list, err := lenient.ParseList(v)
	if err == nil && len(list) == 1 && strings.EqualFold(list[0].Address, sendAs) {
		return f // already right: keep the bytes (and any DKIM signature)
	}
	value := sendAs
	switch {
	case err != nil || len(list) == 0:
		// Unparseable: no name can be trusted, send the bare address.
	case len(list) == 1 && strings.HasSuffix(v, ">"):
		// "phrase <addr>": keep the phrase as written, encoded words in
		// any charset included. The check on the address guards against
		// a '<' inside a quoted local part.
		if i := strings.LastIndexByte(v, '<'); i > 0 && strings.EqualFold(v[i+1:len(v)-1], list[0].Address) {
			value = strings.TrimSpace(v[:i]) + " <" + sendAs + ">"
		}
	default:
		// "addr (comment)" or several authors: the first author's
		// decoded name, re-encoded.
		if strict, err := mail.ParseAddressList(v); err == nil && len(strict) > 0 && strict[0].Name != "" {
			value = (&mail.Address{Name: strict[0].Name, Address: sendAs}).String()
		}
	}
	if len(value) > 900 {
		value = sendAs // a folded giant name would exceed the line limit
	}
	return field{name: "from", raw: []byte("From: " + value + eol)}
}

// filterRecipients keeps f when all its addresses are envelope
// recipients, else rebuilds it with those that are (dropping it when none
// is). It adds the kept addresses to visible.
func filterRecipients(f field, env, visible map[string]bool, eol string) (field, bool) {
	v := f.value()
	list, err := lenient.ParseList(v)
	if err != nil {
		if strings.TrimSpace(v) == "" {
			return f, true
		}
		return field{}, false
	}
	var kept []*mail.Address
	for _, a := range list {
		if env[strings.ToLower(a.Address)] {
			kept = append(kept, a)
			visible[strings.ToLower(a.Address)] = true
		}
	}
	if len(kept) == len(list) {
		return f, true
	}
	if len(kept) == 0 {
		return field{}, false
	}
	// Names are re-encoded only when they decoded cleanly; otherwise the
	// bare address is better than mojibake.
	strict, serr := mail.ParseAddressList(v)
	names := map[string]string{}
	if serr == nil {
		for _, a := range strict {
			names[strings.ToLower(a.Address)] = a.Name
		}
	}
	items := make([]string, len(kept))
	for i, a := range kept {
		items[i] = (&mail.Address{Name: names[strings.ToLower(a.Address)], Address: a.Address}).String()
	}
	return field{name: f.name, raw: foldList(canonical(f.name), items, eol)}, true
}

// lenient parses address lists whatever the charsets of encoded words:
// only the addresses are used from it, never the names.
var lenient = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

func canonical(name string) string {
	if name == "cc" {
		return "Cc"
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

// foldList formats "Name: a, b, c" folded before 78 columns at the
// commas, so long recipient lists stay within the line limit.
func foldList(name string, items []string, eol string) []byte {
	var b strings.Builder
	b.WriteString(name + ":")
	col := len(name) + 1
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
			col++
		}
		if i > 0 && col+1+len(it) > 76 {
			b.WriteString(eol)
			col = 0
		}
		b.WriteString(" " + it)
		col += 1 + len(it)
	}
	b.WriteString(eol)
	return []byte(b.String())
}

// field is one header field as it appeared: its first line and its
// continuation lines, line endings included, so that fields nobody
// changes are written back byte for byte.
type field struct {
	name string // lower-case field name; "" for a line without a colon
	raw  []byte
}

// value is the unfolded field body after the colon.
func (f field) value() string {
	i := bytes.IndexByte(f.raw, ':')
	if i < 0 {
		return ""
	}
	v := string(f.raw[i+1:])
	return strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
}

type header struct {
	fields []field
	eol    string // the message's line ending, used for added fields
}

// splitHeader cuts msg into header fields and the body after the blank
// line. It is lenient on purpose: a malformed line is kept as a nameless
// field rather than refused, since the message was accepted and shaped
// already and the API will judge it. A message without a blank line is
// all header.
func splitHeader(msg []byte) (header, []byte) {
	mh := mailhdr.Split(msg, mailhdr.Options{Mode: mailhdr.LF, CROnlyBlank: true})
	var body []byte
	if mh.Blank {
		body = msg[mh.Body:] // after the blank line (or a stray CR at the very end)
	}
	// Added fields use the header's line ending: LF only when the header,
	// blank line included, has LF endings and no CRLF at all. Deciding on
	// the whole header keeps a second Prepare of the output choosing the
	// same, so a retry prepares the same bytes.
	h := header{eol: "\r\n"}
	if hdr := msg[:len(msg)-len(body)]; bytes.IndexByte(hdr, '\n') >= 0 && !bytes.Contains(hdr, []byte("\r\n")) {
		h.eol = "\n"
	}
	for _, f := range mh.Fields {
		raw := msg[f.Start:f.End:f.End]
		if raw[len(raw)-1] != '\n' {
			// The last line lacks its ending; give it one so that a
			// field added after it starts on a line of its own (a
			// trailing CR would turn an LF ending into CRLF).
			t := bytes.TrimRight(raw, "\r")
			raw = append(t[:len(t):len(t)], h.eol...)
		}
		name := ""
		if f.Colon > 0 {
			name = strings.ToLower(strings.TrimSpace(string(f.Name(msg))))
		}
		h.fields = append(h.fields, field{name: name, raw: raw})
	}
	return h, body
}
