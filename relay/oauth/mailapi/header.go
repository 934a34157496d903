package mailapi

import (
	"bytes"
	"strings"
)

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
	h := header{eol: "\r\n"}
	if i := bytes.IndexByte(msg, '\n'); i >= 0 && (i == 0 || msg[i-1] != '\r') {
		h.eol = "\n"
	}
	pos := 0
	for pos < len(msg) {
		end := len(msg)
		if i := bytes.IndexByte(msg[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := msg[pos:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 && end > pos && line[len(line)-1] == '\n' {
			return h, msg[end:]
		}
		pos = end
		if line[len(line)-1] != '\n' {
			// The last line lacks its ending; give it one so that a
			// field added after it starts on a line of its own.
			line = append(line[:len(line):len(line)], h.eol...)
		}
		if (line[0] == ' ' || line[0] == '\t') && len(h.fields) > 0 {
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw[:len(last.raw):len(last.raw)], line...)
			continue
		}
		name := ""
		if i := bytes.IndexByte(line, ':'); i > 0 {
			name = strings.ToLower(strings.TrimSpace(string(line[:i])))
		}
		h.fields = append(h.fields, field{name: name, raw: line})
	}
	return h, nil
}
