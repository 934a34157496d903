package shape

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
)

// maxLineLen is RFC 5322 §2.1.1's hard limit for 7bit and 8bit bodies.
const maxLineLen = 998

// rewritePart rewrites the links of one text/html part given its encoded
// body and returns the new encoded body and the number of links rewritten.
// Any reason not to touch the part (size, charset, an encoding we cannot
// decode or reproduce) yields 0 and the caller keeps the original bytes.
func rewritePart(raw []byte, l leaf, mint func(string) []byte) ([]byte, int) {
	cs := charsetMode(l.params["charset"])
	if len(raw) > maxPartSize || cs == csUnsupported {
		return nil, 0
	}
	var doc []byte
	switch l.encoding {
	case "", "7bit", "8bit", "binary":
		doc = raw
	case "quoted-printable":
		d, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		if err != nil || !qpRoundTrips(d, lineEnding(raw)) {
			return nil, 0
		}
		doc = d
	case "base64":
		d, err := base64.StdEncoding.DecodeString(string(stripSpace(raw)))
		if err != nil {
			return nil, 0
		}
		doc = d
	default:
		return nil, 0 // x-uuencode and friends: leave alone
	}
	links := findLinks(doc, cs)
	if len(links) == 0 {
		return nil, 0
	}
	ss := make([]splice, len(links))
	for i, lk := range links {
		ss[i] = splice{start: lk.start, end: lk.end, repl: mint(lk.url)}
	}
	if l.encoding == "" || l.encoding == "7bit" || l.encoding == "8bit" {
		ss = keepLineLimit(doc, ss)
	}
	if len(ss) == 0 {
		return nil, 0
	}
	out := applySplices(doc, ss)
	switch l.encoding {
	case "quoted-printable":
		out = encodeQP(out, lineEnding(raw))
	case "base64":
		out = encodeBase64Like(out, raw)
	}
	for _, b := range l.boundaries {
		if startsLine(out, []byte("--"+b)) {
			return nil, 0 // re-encoding produced a delimiter line: would corrupt the MIME tree
		}
	}
	return out, len(ss)
}

// keepLineLimit drops the edits that would push a line of a 7bit/8bit body
// past 998 octets; the link stays as it was rather than the message
// becoming invalid. Lines already too long are not our doing and not checked.
// findLinks guarantees no edit spans a line break, so lines can be judged
// one at a time.
func keepLineLimit(doc []byte, ss []splice) []splice {
	kept := ss[:0:0]
	ls := 0 // start of the current line; only ever moves forward, so this is linear
	for i := 0; i < len(ss); {
		if k := bytes.LastIndexByte(doc[ls:ss[i].start], '\n'); k >= 0 {
			ls += k + 1
		}
		le := len(doc)
		if k := bytes.IndexByte(doc[ss[i].start:], '\n'); k >= 0 {
			le = ss[i].start + k
		}
		j, grow := i, 0
		for ; j < len(ss) && ss[j].start < le; j++ {
			grow += len(ss[j].repl) - (ss[j].end - ss[j].start)
		}
		if old := le - ls; old > maxLineLen || old+grow <= maxLineLen {
			kept = append(kept, ss[i:j]...)
		}
		i, ls = j, le
	}
	return kept
}

// lineEnding reports the line ending an encoded body uses, CRLF by default.
func lineEnding(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 && (i == 0 || b[i-1] != '\r') {
		return "\n"
	}
	return "\r\n"
}

// qpRoundTrips reports whether encodeQP(d) decodes back to exactly d. The
// standard encoder turns every bare CR or LF into a line break, so a body
// whose decoded line breaks differ from its own style (or that encodes a
// bare CR as =0D) would come back altered; we leave such parts alone.
func qpRoundTrips(d []byte, nl string) bool {
	for i, c := range d {
		switch {
		case c == '\r' && (nl == "\n" || i+1 >= len(d) || d[i+1] != '\n'):
			return false
		case c == '\n' && nl == "\r\n" && (i == 0 || d[i-1] != '\r'):
			return false
		}
	}
	return true
}

// encodeQP quoted-printable encodes d with 76-character lines (RFC 2045)
// and the part's line ending.
func encodeQP(d []byte, nl string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(d) // writes to a bytes.Buffer cannot fail
	w.Close()
	if nl == "\n" {
		return bytes.ReplaceAll(b.Bytes(), []byte("\r\n"), []byte("\n"))
	}
	return b.Bytes()
}

// encodeBase64Like base64-encodes d laid out like the original encoded
// body orig: same line length (taken from its first line), same line
// ending, same trailing white space before the next delimiter.
func encodeBase64Like(d, orig []byte) []byte {
	nl := lineEnding(orig)
	body := bytes.TrimRight(orig, " \t\r\n")
	lineLen := 76
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		if n := len(bytes.TrimRight(body[:i], "\r")); n > 0 {
			lineLen = n
		}
	} else if len(body) > 0 {
		lineLen = 0 // one line in, one line out
	}
	enc := base64.StdEncoding.EncodeToString(d)
	var b bytes.Buffer
	b.Grow(len(enc) + len(enc)/max(lineLen, 1)*len(nl) + len(orig) - len(body))
	for lineLen > 0 && len(enc) > lineLen {
		b.WriteString(enc[:lineLen])
		b.WriteString(nl)
		enc = enc[lineLen:]
	}
	b.WriteString(enc)
	b.Write(orig[len(body):])
	return b.Bytes()
}

// stripSpace removes the white space base64 bodies are wrapped with
// (go-message also tolerates spaces and tabs, so we do too).
func stripSpace(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return out
}

// startsLine reports whether some line of b begins with prefix.
func startsLine(b, prefix []byte) bool {
	for pos := 0; pos < len(b); {
		if bytes.HasPrefix(b[pos:], prefix) {
			return true
		}
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return false
		}
		pos += i + 1
	}
	return false
}
