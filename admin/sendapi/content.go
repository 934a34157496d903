package sendapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
)

// An attachment's content is kept as the base64 text of the request, not
// decoded: decoding a large file whole, then encoding it again for MIME,
// would hold it a third and a fourth time. The text is
// checked in one streaming pass, the content sniffer reads the few decoded
// bytes it needs through a ReaderAt, and BuildMIME decodes it in pieces
// straight into the part's writer.

// Content is an attachment's content: unpadded standard base64
// (base64.RawStdEncoding) without whitespace. It is a slice of the request
// body when the JSON string had no escapes and no whitespace, which is what
// every base64 encoder writes by default.
type Content struct {
	text []byte
	size int64 // decoded bytes
}

// ContentText extracts the characters of a JSON string literal, raw (with
// its quotes). Without escapes it is a slice of raw; with them, a decoded
// copy in which every escape that yields a non-ASCII character becomes a
// byte base64 refuses (0xff), so such content is refused as before.
func ContentText(raw []byte) []byte {
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			r := rune(0xfffd)
			if i+4 < len(s) {
				r = hex4(s[i+1 : i+5])
				i += 4
			}
			if r >= 0x80 {
				out = append(out, 0xff)
			} else {
				out = append(out, byte(r))
			}
		default: // \" \\ \/
			out = append(out, s[i])
		}
	}
	return out
}

// hex4 reads the four hex digits of a \u escape (the JSON was validated,
// so they are hex digits).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0xfffd
		}
		r = r<<4 | rune(c)
	}
	return r
}

// ParseBase64 accepts standard base64, padded or not, wrapped at any width
// (MIME tools wrap at 76): whitespace is dropped (copying the text only if
// it has any), trailing padding trimmed, and the rest must decode. It
// reports false for anything else, including an empty result.
func ParseBase64(s []byte) (Content, bool) {
	if bytes.ContainsAny(s, "\r\n \t") {
		clean := make([]byte, 0, len(s))
		for _, c := range s {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				clean = append(clean, c)
			}
		}
		s = clean
	}
	s = bytes.TrimRight(s, "=")
	// One pass through a small buffer: validity and length, without
	// keeping what was decoded.
	n, err := io.Copy(io.Discard, base64.NewDecoder(base64.RawStdEncoding, bytes.NewReader(s)))
	if err != nil || n == 0 {
		return Content{}, false
	}
	return Content{text: s, size: n}, true
}

// Size is the number of decoded bytes.
func (c Content) Size() int64 { return c.size }

// Reader decodes the content from the start.
func (c Content) Reader() io.Reader {
	return base64.NewDecoder(base64.RawStdEncoding, bytes.NewReader(c.text))
}

// ReadAt implements io.ReaderAt over the decoded content: four characters
// of text are three bytes, so any offset is reached without decoding what
// lies before it (the ZIP reader jumps to the end of the file and back).
func (c Content) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	var buf [3 << 10]byte
	n := 0
	for n < len(p) && off < c.size {
		q := off / 3 // the quantum that holds off
		end := min(int64(len(c.text)), (q+int64(len(buf)/3))*4)
		m, err := base64.RawStdEncoding.Decode(buf[:], c.text[q*4:end])
		if err != nil {
			return n, err
		}
		k := copy(p[n:], buf[off%3:m])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
