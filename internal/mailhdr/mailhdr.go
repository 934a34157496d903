// Package mailhdr finds the header fields of a message: where each field
// starts and ends (folded continuation lines included), where the header
// block ends and the body begins. It is the one header splitter of the
// project; its callers differ only in what they then ask of a field —
// strictness (relay's From check), offsets to splice at (shape), raw
// bytes to write back (mailapi), or values (the message log) — and in
// the two options below, which keep each caller's reading of line ends.
//
// It never copies, allocates only the field list, and does not judge:
// a line without a colon is a field like any other, for the caller to
// refuse or keep.
package mailhdr

import "bytes"

// Mode says what ends a line.
type Mode uint8

const (
	// LF ends a line at LF; a CR just before the LF is part of the
	// ending. This is how go-message, net/textproto and most MTAs read.
	LF Mode = iota
	// CRLF ends a line at CRLF only: a bare CR or LF stays inside the
	// line, for a strict caller to refuse (RFC 5322 §2.2).
	CRLF
)

// Options tune Split.
type Options struct {
	Mode Mode
	// CROnlyBlank counts a line of nothing but CRs (before its ending,
	// or as the very last bytes) as the blank line that ends the header,
	// as lenient readers that trim every CR and LF do.
	CROnlyBlank bool
}

// Field is one header field: its first line and its continuation lines.
// Offsets index the bytes given to Split.
type Field struct {
	// Start and End delimit the field's bytes, the last line's ending
	// included (a last line that has none ends at the end of the input).
	Start, End int
	// Colon is the offset of the first colon in the field's first line,
	// relative to Start; -1 when that line has none.
	Colon int
	// First is the length of the first line without its ending.
	First int
}

// Header is the header block Split found.
type Header struct {
	Fields []Field
	// End is the offset of the blank line that ends the header, or the
	// input's length when there is none.
	End int
	// Body is the offset of the first body byte, after the blank line's
	// ending; the input's length when there is no blank line.
	Body int
	// Blank reports whether a blank line ended the header; without one
	// the whole input is header.
	Blank bool
	// NL is the first line's ending: "\n" when it is a bare LF (LF mode),
	// else "\r\n". Fields a caller inserts use it.
	NL string
}

// Split finds the header fields of b. A line that starts with a space or
// a tab continues the field before it; one that starts the header is a
// field of its own (callers that refuse such a header check the first
// field's first byte).
func Split(b []byte, o Options) Header {
	// Room for a typical header's fields at once: growing from nil took
	// four or five allocations per split, and a message is split at DATA
	// and again for each attempt's shaping.
	h := Header{End: len(b), Body: len(b), NL: "\r\n", Fields: make([]Field, 0, 16)}
	for pos := 0; pos < len(b); {
		text, next := line(b, pos, o.Mode)
		if pos == 0 && o.Mode == LF && next <= len(b) && next > 0 && b[next-1] == '\n' && (next-pos == 1 || b[next-2] != '\r') {
			h.NL = "\n"
		}
		if len(text) == 0 || o.CROnlyBlank && len(bytes.Trim(text, "\r")) == 0 {
			h.End, h.Body, h.Blank = pos, next, true
			return h
		}
		if (text[0] == ' ' || text[0] == '\t') && len(h.Fields) > 0 {
			h.Fields[len(h.Fields)-1].End = next
		} else {
			h.Fields = append(h.Fields, Field{Start: pos, End: next, Colon: bytes.IndexByte(text, ':'), First: len(text)})
		}
		pos = next
	}
	return h
}

// line returns the line at pos without its ending, and where the next
// line starts.
func line(b []byte, pos int, m Mode) (text []byte, next int) {
	rest := b[pos:]
	if m == CRLF {
		if i := bytes.Index(rest, []byte("\r\n")); i >= 0 {
			return rest[:i], pos + i + 2
		}
		return rest, len(b)
	}
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return rest, len(b)
	}
	return bytes.TrimSuffix(rest[:i], []byte("\r")), pos + i + 1
}

// Name returns the bytes of f's first line before its colon, untrimmed;
// the whole first line when it has no colon.
func (f Field) Name(b []byte) []byte {
	if f.Colon < 0 {
		return b[f.Start : f.Start+f.First]
	}
	return b[f.Start : f.Start+f.Colon]
}

// Lines returns f's lines without their endings, the first line whole
// (name and colon included). m must be the mode f was split with.
func (f Field) Lines(b []byte, m Mode) [][]byte {
	var out [][]byte
	for pos := f.Start; pos < f.End; {
		text, next := line(b[:f.End], pos, m)
		out = append(out, text)
		pos = next
	}
	return out
}
