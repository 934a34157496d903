package relay

import (
	"bytes"
	"net/mail"
	"strings"

	"github.com/smtpmux/smtpmux/internal/mailhdr"
)

// headerFromIs reports whether a message sent with a mailbox password
// names only that mailbox as its author (SPEC §10). The header block is
// parsed strictly, because the reader that matters is the upstream's and
// the recipient's, not ours: a lenient parse that stops at the first From,
// or at a malformed line, lets a second, spoofed From through verbatim.
//
//   - every line is a field "name:" (RFC 5322 ftext, no space before the
//     colon, so obsolete "From :" is refused) or a folded continuation;
//   - exactly one From, holding exactly one address, the mailbox's
//     (a display name is allowed);
//   - Sender, Resent-From and Resent-Sender, when present, likewise name
//     only the mailbox, once each: they too are shown as who sent it;
//   - Reply-To is free: pointing replies elsewhere (a help desk, a
//     no-reply alias) is ordinary and is what sender defaults set.
//
// body must hold the whole header block; a block not ended by an empty
// line within body counts only when body is the whole message (complete).
func headerFromIs(body []byte, want string) bool {
	return mailboxHeadersOK(body, want, true)
}

// mailboxHeadersOK is headerFromIs with complete saying whether body is
// the whole message (false: only its first bytes were read into memory).
func mailboxHeadersOK(body []byte, want string, complete bool) bool {
	fields, ok := strictHeader(body, complete)
	if !ok {
		return false
	}
	froms := 0
	once := map[string]int{}
	for _, f := range fields {
		name := strings.ToLower(f.name)
		switch name {
		case "from":
			froms++
		case "sender", "resent-from", "resent-sender":
		default:
			continue
		}
		once[name]++
		if once[name] > 1 || !onlyAddress(f.value, want) {
			return false
		}
	}
	return froms == 1
}

// strictHeader returns the unfolded fields of body's header block, read
// strictly: lines end in CRLF only, every line is a field "name:" (RFC
// 5322 ftext, no space before the colon) or a continuation of one, and
// no line holds a bare CR, a bare LF or a NUL. It fails on any other line,
// on a message with no header, and (complete false: body is only the
// message's first bytes) on a header block not ended within body.
func strictHeader(body []byte, complete bool) ([]field, bool) {
	h := mailhdr.Split(body, mailhdr.Options{Mode: mailhdr.CRLF})
	switch {
	case !h.Blank && !complete:
		return nil, false // a header block too long to check is not trusted
	case h.Blank && h.End == 0:
		return nil, false // no header at all
	}
	out := make([]field, 0, len(h.Fields))
	for _, f := range h.Fields {
		lines := f.Lines(body, mailhdr.CRLF)
		first := lines[0]
		if first[0] == ' ' || first[0] == '\t' {
			return nil, false // a continuation of nothing
		}
		if f.Colon < 1 {
			return nil, false
		}
		for _, c := range first[:f.Colon] {
			if c < 33 || c > 126 {
				return nil, false
			}
		}
		var value strings.Builder
		value.Write(first[f.Colon+1:])
		for i, l := range lines {
			if bytes.ContainsAny(l, "\r\n\x00") {
				return nil, false
			}
			if i > 0 {
				value.Write(l)
			}
		}
		out = append(out, field{name: string(first[:f.Colon]), value: value.String()})
	}
	return out, true
}

// field is one unfolded header field.
type field struct{ name, value string }

// onlyAddress reports whether an address-list value is exactly one
// mailbox, want. net/mail flattens a group ("staff: a@x;") into its
// members, but From and Sender take mailboxes only (RFC 5322 §3.6.2), so a
// group is refused by its ';' outside quoted strings; and it skips empty
// list members, so "bob@x," is one address to it while other readers may
// see a list, refused by its ',' outside quoted strings. (A comma inside
// a comment is refused too: rare, and refusing loses nothing.)
//
// The address must be ASCII (SMTPUTF8 is not offered) and is compared
// with ASCII case folding only: strings.EqualFold folds Unicode, so
// "ſK@x" (U+017F, U+212A) would pass for "sk@x" while a recipient's
// client shows another address.
func onlyAddress(value, want string) bool {
	list, err := mail.ParseAddressList(value)
	if err != nil || len(list) != 1 || !asciiEqualFold(list[0].Address, want) {
		return false
	}
	quoted := false
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case (c == ';' || c == ',') && !quoted:
			return false
		}
	}
	return true
}

// asciiEqualFold reports whether a and b are equal under ASCII case
// folding, both being ASCII.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 0x80 || y >= 0x80 {
			return false
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
