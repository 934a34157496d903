// Package shape holds the pure message transformations smtpmux applies
// before a message leaves (SPEC §6): provider sender defaults,
// tracking-link rewriting and DKIM signing. (Connected accounts' "send as
// the authorised address" rule is applied by relay/shaping with
// mailapi.Prepare, which also fits To/Cc/Bcc; ForceFrom here is the From
// part of that rule alone.)
//
// Every function takes wire bytes and returns new bytes; nothing here does
// network I/O or keeps state, so the relay can re-run shaping for each
// attempt and get the same output. All edits are surgical: header edits
// splice whole fields in or out of the header block and never touch the
// body, and link rewriting replaces only attribute values inside text/html
// parts. Bytes that were not edited are returned exactly as they came in,
// which matters because a DKIM signature (ours or an upstream one) covers
// them.
//
// Order matters: ApplyDefaults, then RewriteLinks, then Sign.
package shape

import (
	"bufio"
	"bytes"
	"fmt"
	netmail "net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-message/mail"
	gmtextproto "github.com/emersion/go-message/textproto"
	"github.com/smtpmux/smtpmux/internal/mailhdr"
)

// rawHeader locates an entity's header block by byte offsets. We keep our
// own offsets instead of re-serialising go-message's Header because
// go-message normalises line endings and folding on output, and any byte it
// changed outside the edited field would be a gratuitous difference (and a
// broken signature for pre-signed mail).
type rawHeader struct {
	fields []rawField
	end    int    // offset of the blank separator line, or len if there is none
	body   int    // offset of the first body byte
	nl     string // the line ending the entity uses, reused for inserted fields
}

// rawField is one header field, continuation lines included.
type rawField struct {
	key        string // canonical form, as go-message reports it
	start, end int    // raw bytes including the terminating line ending
	colon      int    // offset of the first line's first colon from start, or -1
}

// scanHeader splits b into header fields and body following the same line
// rules as go-message's textproto.ReadHeader (LF or CRLF endings, a line
// starting with SP/HT continues the previous field, the first empty line ends
// the header), so that the two views of the header agree.
func scanHeader(b []byte) rawHeader {
	mh := mailhdr.Split(b, mailhdr.Options{Mode: mailhdr.LF})
	h := rawHeader{end: mh.End, body: mh.Body, nl: mh.NL, fields: make([]rawField, 0, len(mh.Fields))}
	for _, f := range mh.Fields {
		h.fields = append(h.fields, rawField{
			key:   canonicalKey(bytes.Trim(f.Name(b), " \t")),
			start: f.Start, end: f.End, colon: f.Colon,
		})
	}
	return h
}

// commonKeys are the canonical names most messages carry: canonicalKey
// returns these strings instead of allocating a new one per field and
// attempt.
var commonKeys = []string{
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-Id", "Mime-Version",
	"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Reply-To",
	"Received", "Return-Path", "Sender", "Dkim-Signature", "References",
	"In-Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post", "X-Mailer",
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey(string(name)). A name
// equal to a common key under ASCII case folding consists of letters and
// dashes only, so that key is its canonical form.
func canonicalKey(name []byte) string {
	for _, k := range commonKeys {
		if asciiFoldEqual(name, k) {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// asciiFoldEqual compares under ASCII case folding only (Unicode folding
// would match "ſubject" to "Subject", which canonicalisation does not).
func asciiFoldEqual(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		d := s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d || c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// parseHeader returns both views of msg's header: go-message's parsed one
// (for values, validation and address decoding) and the raw offsets (for
// splicing). A header go-message rejects is reported as an error so callers
// can leave the message alone rather than edit something they misread.
func parseHeader(msg []byte) (mail.Header, rawHeader, error) {
	rh := scanHeader(msg)
	// Size the buffer to hold the whole header: walk parses one header per
	// MIME part, so a fixed 4 KiB buffer each would dominate messages with
	// many parts, and a buffer smaller than a line makes ReadHeader drop an
	// unterminated last line with io.EOF instead of judging it.
	hb := msg[:rh.body]
	h, err := gmtextproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(hb), len(hb)+16))
	if err != nil {
		return mail.Header{}, rh, fmt.Errorf("shape: malformed header: %w", err)
	}
	var mh mail.Header
	mh.Header.Header = h
	return mh, rh, nil
}

// formatAddressField renders "Key: Name <addr>" with go-message's address
// formatting (RFC 2047 Q-encoding of non-ASCII display names, quoting of
// specials), folded to 78-octet lines with nl as the line ending so an
// LF-only message does not end up with mixed endings.
func formatAddressField(key string, addr *netmail.Address, nl string) []byte {
	var h mail.Header
	h.SetAddressList(key, []*mail.Address{addr})
	return []byte(fold(key+": "+h.Get(key), nl) + nl)
}

// fold breaks a header field at spaces so lines stay within the 78 octets
// RFC 5322 §2.1.1 recommends. go-message's own folding gives up when the
// first encoded word is long, which names of a few words already trigger.
// Turning " " into nl+" " is undone exactly by unfolding, even inside a
// quoted string; a single word longer than a line is left whole.
func fold(f string, nl string) string {
	const limit = 78
	words := strings.Split(f, " ")
	var b strings.Builder
	lineLen := 0
	for i, w := range words {
		switch {
		case i == 0:
		case lineLen+1+len(w) > limit && lineLen > 0 && w != "":
			b.WriteString(nl)
			lineLen = 0
			fallthrough
		default:
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(w)
		lineLen += len(w)
	}
	return b.String()
}

// splice is one replacement of msg[start:end] by repl.
type splice struct {
	start, end int
	repl       []byte
}

// applySplices builds the edited message. Splices must be sorted and must
// not overlap; everything between them is copied verbatim. With no splices
// msg itself is returned.
func applySplices(msg []byte, ss []splice) []byte {
	if len(ss) == 0 {
		return msg
	}
	size := len(msg)
	for _, s := range ss {
		size += len(s.repl) - (s.end - s.start)
	}
	out := make([]byte, 0, size)
	pos := 0
	for _, s := range ss {
		out = append(out, msg[pos:s.start]...)
		out = append(out, s.repl...)
		pos = s.end
	}
	return append(out, msg[pos:]...)
}

// insertAt returns the splice that adds fields at the end of the header
// block, given the removals already planned in ss. Appending (rather than
// prepending) keeps trace fields such as Received at the top, where
// RFC 5322 §3.6.7 wants them.
func (h rawHeader) insertAt(msg []byte, ss []splice, fields ...[]byte) splice {
	// Find what will precede the insertion once removals are applied.
	p := h.end
	for i := len(ss) - 1; i >= 0 && ss[i].end == p && len(ss[i].repl) == 0; i-- {
		p = ss[i].start
	}
	var repl []byte
	if p > 0 && msg[p-1] != '\n' {
		// The last field has no line ending (a header-only message cut
		// short); without one our field would be glued onto its value.
		repl = append(repl, h.nl...)
	}
	for _, f := range fields {
		repl = append(repl, f...)
	}
	return splice{start: h.end, end: h.end, repl: repl}
}
