// Package benchmsg builds and verifies the messages of the smtpmux benchmark
// harness.
//
// Every message is a valid RFC 5322 message with a unique Message-ID. Its
// body starts with a line naming the run and the sequence number, is padded
// with printable ASCII lines up to the requested size, and ends with a
// trailer line
//
//	X-Bench-Sum: <seq> <length> <crc32c>
//
// where length (decimal) and the CRC-32C (Castagnoli, 8 hex digits) cover
// every body byte before the trailer line (from the first byte after the
// blank line that ends the header). CRC-32C runs in hardware at several GB/s;
// SHA-256 (about 300 MB/s on CPUs without SHA extensions) would steal CPU
// from the relay under test on a 2-core machine. The body's first line
// carries the run and sequence number, so a body delivered under another
// message's header fails the check too. Relays may add or
// rewrite header fields (Received:, Return-Path:, …) without breaking the
// check; any change to the body does break it.
package benchmsg

import (
	"bytes"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"strconv"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sum returns the trailer value for body: "<length> <crc32c hex>".
func sum(dst, body []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, ' ')
	c := crc32.Checksum(body, castagnoli)
	return hex.AppendEncode(dst, []byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)})
}

// TrailerPrefix starts the last body line of every benchmark message.
const TrailerPrefix = "X-Bench-Sum: "

// lineLen is the length of a padding line, CRLF excluded.
const lineLen = 76

// Builder produces benchmark messages of a fixed target size. A Builder is
// not safe for concurrent use; give each session its own.
type Builder struct {
	Run  string // run identifier, part of every Message-ID
	From string // header From address
	To   string // header To address
	Size int    // target size of the whole message in bytes

	buf []byte
}

// pad is the source of padding bytes: printable ASCII, never starting a line
// with a dot, so that the DATA stream needs no dot-stuffing.
var pad = func() []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	b := make([]byte, 4096)
	for i := range b {
		b[i] = alphabet[(i*7+i/len(alphabet))%len(alphabet)]
	}
	return b
}()

// MessageID returns the Message-ID (without angle brackets) of message seq.
func MessageID(run string, seq int) string {
	return strconv.Itoa(seq) + "." + run + "@bench.smtpmux.invalid"
}

// Build returns message seq with CRLF line endings. The returned slice is
// reused by the next call.
func (b *Builder) Build(seq int) []byte {
	s := strconv.Itoa(seq)
	m := b.buf[:0]
	m = append(m, "From: <"...)
	m = append(m, b.From...)
	m = append(m, ">\r\nTo: <"...)
	m = append(m, b.To...)
	m = append(m, ">\r\nSubject: smtpmux bench "...)
	m = append(m, b.Run...)
	m = append(m, " #"...)
	m = append(m, s...)
	m = append(m, "\r\nDate: "...)
	m = time.Now().AppendFormat(m, time.RFC1123Z)
	m = append(m, "\r\nMessage-ID: <"...)
	m = append(m, MessageID(b.Run, seq)...)
	m = append(m, ">\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	bodyStart := len(m)
	m = append(m, "bench run="...)
	m = append(m, b.Run...)
	m = append(m, " seq="...)
	m = append(m, s...)
	m = append(m, "\r\n"...)

	// Trailer: prefix + seq + " " + length + " " + 8 hex digits + CRLF; the
	// length has as many digits as the target size at most.
	trailerLen := len(TrailerPrefix) + len(s) + 1 + len(strconv.Itoa(max(b.Size, 1))) + 1 + 8 + 2
	for off := 0; len(m)+trailerLen < b.Size; {
		n := b.Size - trailerLen - len(m) - 2 // room left for text, minus CRLF
		if n > lineLen {
			n = lineLen
		}
		if n < 1 {
			n = 1
		}
		off %= len(pad) - lineLen
		m = append(m, pad[off:off+n]...)
		m = append(m, "\r\n"...)
		off += n
	}
	body := m[bodyStart:]
	m = append(m, TrailerPrefix...)
	m = append(m, s...)
	m = append(m, ' ')
	m = sum(m, body)
	m = append(m, "\r\n"...)
	b.buf = m
	return m
}

// Errors returned by Verify.
var (
	ErrNoBody    = errors.New("benchmsg: no header/body separator")
	ErrNoTrailer = errors.New("benchmsg: no " + TrailerPrefix + "trailer")
	ErrChecksum  = errors.New("benchmsg: checksum mismatch")
	ErrNoID      = errors.New("benchmsg: no Message-ID")
)

// Verify checks the trailer checksum of msg (as received, CRLF line endings)
// and returns its Message-ID (without angle brackets).
func Verify(msg []byte) (id []byte, err error) {
	sep := bytes.Index(msg, []byte("\r\n\r\n"))
	if sep < 0 {
		return nil, ErrNoBody
	}
	id = headerMessageID(msg[:sep+2])
	body := msg[sep+4:]
	body = bytes.TrimSuffix(body, []byte("\r\n"))
	t := bytes.LastIndex(body, []byte("\r\n"))
	if t < 0 || !bytes.HasPrefix(body[t+2:], []byte(TrailerPrefix)) {
		return id, ErrNoTrailer
	}
	trailer := body[t+2+len(TrailerPrefix):]
	sp := bytes.IndexByte(trailer, ' ')
	if sp < 0 {
		return id, ErrNoTrailer
	}
	var buf [32]byte
	if !bytes.Equal(sum(buf[:0], body[:t+2]), trailer[sp+1:]) {
		return id, ErrChecksum
	}
	if id == nil {
		return nil, ErrNoID
	}
	return id, nil
}

// headerMessageID returns the value of the first Message-ID field of header,
// without angle brackets, or nil.
func headerMessageID(header []byte) []byte {
	for len(header) > 0 {
		eol := bytes.Index(header, []byte("\r\n"))
		if eol < 0 {
			eol = len(header)
		}
		line := header[:eol]
		if len(line) > 11 && bytes.EqualFold(line[:11], []byte("message-id:")) {
			v := bytes.TrimSpace(line[11:])
			v = bytes.TrimPrefix(v, []byte("<"))
			v = bytes.TrimSuffix(v, []byte(">"))
			return v
		}
		header = header[min(eol+2, len(header)):]
	}
	return nil
}
