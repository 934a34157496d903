package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// BufferGrower is a request body that reserves the buffer it is read into
// (the Sending API's send budget): ReadRaw calls Grow before each growth,
// and an error from it ends the read with that error.
type BufferGrower interface {
	Grow(n int64) error
}

// ReadRaw reads the whole body within limit. A body the idempotency
// layer already read is handed over as it is, not copied again.
func ReadRaw(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, ErrTooLarge(limit)
	}
	if rb, ok := r.Body.(*prereadBody); ok && rb.Reader.Size() == int64(rb.Reader.Len()) {
		if int64(len(rb.data)) > limit {
			return nil, ErrTooLarge(limit)
		}
		// Handed over, not kept: once the handler is done with the
		// bytes (a send, once its MIME is built) nothing else holds them.
		data := rb.data
		rb.Reader.Reset(nil)
		rb.data = nil
		return data, nil
	}
	data, err := readAllSized(io.LimitReader(r.Body, limit+1), min(r.ContentLength, limit), limit, growerOf(r.Body))
	if ae := (*Error)(nil); errors.As(err, &ae) {
		return nil, ae // the send budget refused the rest (BufferGrower)
	}
	if err != nil {
		return nil, ErrInvalidParam("", "cannot read request body")
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge(limit)
	}
	return data, nil
}

// readAllSized is io.ReadAll into a buffer that grows with the bytes
// that arrived, each growth reserved through grow first (the send
// budget, sendapi), towards hint bytes (the Content-Length, -1 when
// unknown) and one more for the read that finds the end. io.ReadAll
// grows from 512 bytes by appending, which for a 24 MB send allocated
// about twice the body (issue 12, item 10); sizing the buffer from the
// Content-Length up front let a client that announces 35 MB and sends
// one byte hold 35 MB. So the buffer starts at 64 KiB and grows fourfold
// once full, straight to the announced size once that is within four
// steps: the steps before then cost at most a third of the body, and
// past its first 64 KiB a buffer is at most sixteen times what arrived.
func readAllSized(r io.Reader, hint, limit int64, grow func(int64) error) ([]byte, error) {
	const first = 64 << 10
	size := min(int64(4<<10), limit+1)
	if hint >= 0 {
		size = min(hint+1, first)
	}
	if err := grow(size); err != nil {
		return nil, err
	}
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) < cap(b) {
			continue
		}
		next := int64(cap(b)) * 4
		if hint >= 0 && next*4 >= hint+1 {
			next = hint + 1
		}
		next = min(next, limit+1)
		if next <= int64(cap(b)) {
			next = int64(cap(b)) + 1 // past the hint: the next read finds the end, or the limit
		}
		if err := grow(next - int64(cap(b))); err != nil {
			return nil, err
		}
		nb := make([]byte, len(b), next)
		copy(nb, b)
		b = nb
	}
}

// prereadBody is a request body already read into memory; ReadRaw takes its
// bytes back instead of reading them into a new buffer.
type prereadBody struct {
	*bytes.Reader
	data []byte
}

// Close implements io.Closer.
func (*prereadBody) Close() error { return nil }

// growerOf returns how ReadRaw reserves the buffer it reads body into:
// through the body's own reservation when it has one, freely otherwise
// (the 1 MiB bound of other requests is their limit).
func growerOf(body io.Reader) func(int64) error {
	if g, ok := body.(BufferGrower); ok {
		return g.Grow
	}
	return func(int64) error { return nil }
}
