// Package crlf keeps message content in SMTP's one line end, CRLF.
//
// A bare CR or a bare LF in a body is what SMTP smuggling needs: smtpmux's
// DATA reader ends a message only at <CRLF>.<CRLF>, but an upstream that
// takes a bare CR (or LF) for a line end reads "\r.\r" as the end of the
// message and runs what follows as commands. So inbound content goes
// through a Reader (refuse or normalise, the [smtp] bare_newlines setting)
// and every body handed to a provider through Normalize, whatever its
// source. The SMTP client's dot-writer stuffs dots only after CRLF, which
// is then every line start.
package crlf

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// Mode says what a Reader does with a bare CR or LF.
type Mode int

const (
	// ModeReject fails the read with ErrBareNewline, as Postfix does with
	// smtpd_forbid_bare_newline = reject.
	ModeReject Mode = iota
	// ModeNormalize turns each bare CR and bare LF into CRLF. "\r\r\n" is a
	// bare CR and a CRLF, so it becomes two line ends.
	ModeNormalize
)

// ParseMode reads a mode name: "reject" or "normalize".
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "reject":
		return ModeReject, true
	case "normalize":
		return ModeNormalize, true
	}
	return 0, false
}

// Errors of a Reader. They are sticky: every later Read returns the same.
var (
	ErrBareNewline = errors.New("message content has a bare CR or LF")
	ErrNUL         = errors.New("message content has a NUL byte")
)

// Reader filters message content read from r: NUL bytes fail the read
// with ErrNUL in both modes (no mail system handles them safely, RFC 5322
// §2.3 forbids them), bare CR/LF are refused or normalised by mode. A CR
// at the end of one Read is held until the next byte is known, so chunk
// boundaries (BDAT) change nothing.
type Reader struct {
	r    io.Reader
	mode Mode
	cr   bool    // the last input byte was a CR, not yet written
	buf  *[]byte // input (ModeNormalize), from bufPool until the end
	out  []byte  // output not yet returned
	err  error
}

// bufPool holds ModeNormalize's input buffers. A Reader per message
// allocating its own 32 KiB was a third of all the bytes the daemon
// allocated relaying 2 KiB messages (bench/RESULTS.md, issue 19).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// NewReader filters r in the given mode.
func NewReader(r io.Reader, mode Mode) *Reader {
	return &Reader{r: r, mode: mode}
}

// Read implements io.Reader.
func (f *Reader) Read(p []byte) (int, error) {
	if f.mode == ModeReject {
		return f.readReject(p)
	}
	for {
		if len(f.out) > 0 {
			n := copy(p, f.out)
			f.out = f.out[n:]
			return n, nil
		}
		if f.err != nil {
			if f.buf != nil {
				// Nothing refers to the buffer any more (out is drained).
				bufPool.Put(f.buf)
				f.buf = nil
			}
			return 0, f.err
		}
		if f.buf == nil {
			f.buf = bufPool.Get().(*[]byte)
		}
		n, err := f.r.Read(*f.buf)
		f.out, f.err = f.filter((*f.buf)[:n])
		if f.err == nil && err != nil {
			if err == io.EOF && f.cr {
				// The content ends in a bare CR.
				f.cr = false
				f.out = append(f.out, '\r', '\n')
			}
			f.err = err
		}
	}
}

// readReject is Read in ModeReject, which never rewrites: it reads into p
// and checks what came, without a buffer of its own.
func (f *Reader) readReject(p []byte) (int, error) {
	for f.err == nil {
		n, err := f.r.Read(p)
		if _, ferr := f.filter(p[:n]); ferr != nil {
			f.err = ferr
			return 0, ferr // the chunk is not handed on
		}
		if err != nil {
			if err == io.EOF && f.cr {
				err = ErrBareNewline // the content ends in a bare CR
			}
			f.err = err
		}
		if n > 0 {
			return n, nil // the error, if any, comes with the next Read
		}
	}
	return 0, f.err
}

// filter checks (and in ModeNormalize rewrites) one chunk. In ModeReject
// the chunk is returned as is: a CR at its end is passed on at once, and
// if the next chunk shows it bare, the read fails then, which refuses the
// whole message all the same. In ModeNormalize a CR at the end is held
// back until the next byte says whether an LF completes it.
func (f *Reader) filter(in []byte) ([]byte, error) {
	if bytes.IndexByte(in, 0) >= 0 {
		return nil, ErrNUL
	}
	if len(in) == 0 {
		return nil, nil
	}
	if f.mode == ModeReject {
		if f.cr && in[0] != '\n' {
			return nil, ErrBareNewline
		}
		start := in
		if f.cr {
			start = in[1:] // the LF completing the held CR
		}
		f.cr = len(start) > 0 && start[len(start)-1] == '\r'
		if f.cr {
			start = start[:len(start)-1]
		}
		if !Clean(start) {
			return nil, ErrBareNewline
		}
		return in, nil
	}
	if !f.cr && in[len(in)-1] != '\r' && Clean(in) {
		return in, nil // the common case: nothing to rewrite
	}
	out := make([]byte, 0, len(in)+len(in)/8+2)
	for _, c := range in {
		if f.cr {
			f.cr = false
			out = append(out, '\r', '\n')
			if c == '\n' {
				continue // the CR's own LF
			}
		}
		switch c {
		case '\r':
			f.cr = true
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// Clean reports whether b has no bare CR and no bare LF. A CR at the very
// end counts as bare.
func Clean(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		cr := bytes.IndexByte(b, '\r')
		if i < 0 {
			return cr < 0
		}
		// Every CR before this LF must be the one right before it.
		if i == 0 || b[i-1] != '\r' || cr != i-1 {
			return false
		}
		b = b[i+1:]
	}
	return true
}

// Normalize returns b with every bare CR and bare LF made CRLF. Clean input
// is returned as is; otherwise the result is a new slice (b may be a
// read-only mapping of a spool file).
func Normalize(b []byte) []byte {
	if Clean(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/8+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
