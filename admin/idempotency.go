package admin

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"

	"github.com/smtpmux/smtpmux/store"
)

// Idempotency (SPEC §3). A POST carrying an Idempotency-Key runs once per
// key and credential within idempotencyTTL: retries with the same body get
// the first answer replayed byte for byte (status, body, and the headers in
// replayedHeaders), a different body or a retry while the first request is
// still running gets 409 idempotency_conflict.
const (
	idempotencyTTL          = store.IdempotencyTTL
	maxIdempotencyKey       = 255
	headerIdempotencyKey    = "Idempotency-Key"
	codeIdempotencyConflict = "idempotency_conflict"
)

// replayedHeaders are the handler-set headers that are part of an answer.
// Rate-limit headers are not: they describe the retry, not the answer.
var replayedHeaders = []string{"Content-Type", "Cache-Control", "X-Content-Type-Options", "Location", "ETag", "X-Request-Id"}

// serve runs the route's handler, through the idempotency layer when the
// request asks for it.
func (s *Server) serve(c *call, rt route) error {
	vals, has := c.r.Header[headerIdempotencyKey]
	if c.r.Method != http.MethodPost || !has {
		return rt.h(c)
	}
	key := vals[0]
	if len(vals) != 1 || key == "" || len(key) > maxIdempotencyKey || !printableASCII(key) {
		return errInvalidParam(headerIdempotencyKey, "the Idempotency-Key header must be one value of 1 to %d printable ASCII characters", maxIdempotencyKey)
	}
	limit := int64(maxBodyBytes)
	if rt.auth == authSend {
		limit = maxSendBodyBytes
	}
	// The body is read here, once, to fingerprint it; the handler reads
	// the same bytes again from memory.
	body, err := readRaw(c.r, limit)
	if err != nil {
		return err
	}
	c.r.Body = &prereadBody{Reader: bytes.NewReader(body), data: body}
	c.r.ContentLength = int64(len(body))
	h := sha256.New()
	io.WriteString(h, c.r.Method+" "+c.r.URL.RequestURI()+"\n")
	h.Write(body)
	hash := h.Sum(nil)
	scope := c.credentialID()

	rec, err := s.st.BeginIdempotent(scope, key, hash, s.boot, s.now(), idempotencyTTL)
	if err != nil {
		return err
	}
	if rec != nil {
		if !bytes.Equal(rec.RequestHash, hash) {
			return &apiError{Status: http.StatusConflict, Code: codeIdempotencyConflict, Param: headerIdempotencyKey,
				Message: "this Idempotency-Key was already used with a different request; use a new key for a new request"}
		}
		if rec.State != store.IdemDone {
			return &apiError{Status: http.StatusConflict, Code: codeIdempotencyConflict, Param: headerIdempotencyKey, Retryable: true,
				Message: "a request with this Idempotency-Key is still in progress; retry once it has finished"}
		}
		body, err := s.opts.Sealer.Open(rec.Body)
		if err != nil {
			return err
		}
		s.log.Info("idempotent replay", "request_id", c.reqID, "key_id", scope, "status", rec.Status)
		replay(c.w, rec, []byte(body))
		return nil
	}

	// The answer is buffered, stored, and only then written: a client that
	// sees it and retries at once must find the record done, not in flight.
	real := c.w
	cw := &captureWriter{ResponseWriter: real}
	c.w = cw
	done := false
	defer func() {
		if !done { // the handler panicked: let a retry run again
			_ = s.st.ReleaseIdempotent(scope, key, s.boot)
		}
	}()
	if err := rt.h(c); err != nil {
		c.fail(err)
	}
	done = true
	c.w = real
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	if storable(cw.status) {
		saved := map[string]string{}
		for _, name := range replayedHeaders {
			if v := real.Header().Get(name); v != "" {
				saved[name] = v
			}
		}
		// Sealed: answers may carry secrets shown once (a new key, a
		// webhook secret), which must not sit in the store in clear.
		err = s.st.FinishIdempotent(scope, key, s.boot, cw.status, saved, s.opts.Sealer.Seal(cw.buf.String()))
	} else {
		err = s.st.ReleaseIdempotent(scope, key, s.boot)
	}
	if err != nil {
		// The answer is still right and is sent; only its replay is at
		// risk (a retry may run the request again), which the log says.
		s.log.Error("idempotency record not saved", "request_id", c.reqID, "err", err)
	}
	real.WriteHeader(cw.status)
	real.Write(cw.buf.Bytes())
	return nil
}

// storable says which answers are replayed. Server errors, rate limits and
// authentication failures are not: they say nothing about the request
// itself, and a retry deserves a fresh attempt. Everything else, including
// validation errors, is part of the request's outcome and is replayed.
func storable(status int) bool {
	return status < 500 && status != http.StatusTooManyRequests && status != http.StatusUnauthorized
}

// replay writes a stored answer.
func replay(w http.ResponseWriter, rec *store.IdempotencyRecord, body []byte) {
	h := w.Header()
	for k, v := range rec.Header {
		h.Set(k, v)
	}
	h.Set("Idempotent-Replayed", "true")
	w.WriteHeader(rec.Status)
	w.Write(body)
}

// credentialID scopes idempotency keys: one client's keys never meet
// another's.
func (c *call) credentialID() string {
	switch {
	case c.key != nil:
		return c.key.ID
	case c.send != nil:
		return c.send.ID
	}
	return "operator"
}

// readRaw reads the whole body within limit. A body the idempotency
// layer already read is handed over as it is, not copied again.
func readRaw(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge(limit)
	}
	if rb, ok := r.Body.(*prereadBody); ok && rb.Reader.Size() == int64(rb.Reader.Len()) {
		if int64(len(rb.data)) > limit {
			return nil, errTooLarge(limit)
		}
		// Handed over, not kept: once the handler is done with the
		// bytes (a send, once its MIME is built) nothing else holds them.
		data := rb.data
		rb.Reader.Reset(nil)
		rb.data = nil
		return data, nil
	}
	data, err := readAllSized(io.LimitReader(r.Body, limit+1), min(r.ContentLength, limit), limit, bufferGrower(r.Body))
	if ae := (*apiError)(nil); errors.As(err, &ae) {
		return nil, ae // the send budget refused the rest (sendbudget.go)
	}
	if err != nil {
		return nil, errInvalidParam("", "cannot read request body")
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge(limit)
	}
	return data, nil
}

// readAllSized is io.ReadAll into a buffer that grows with the bytes
// that arrived, each growth reserved through grow first (the send
// budget, sendbudget.go), towards hint bytes (the Content-Length, -1 when
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

// prereadBody is a request body already read into memory; readRaw takes its
// bytes back instead of reading them into a new buffer.
type prereadBody struct {
	*bytes.Reader
	data []byte
}

// Close implements io.Closer.
func (*prereadBody) Close() error { return nil }

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// captureWriter buffers an answer. Headers go straight to the real writer's
// map (nothing is sent before WriteHeader).
type captureWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}
