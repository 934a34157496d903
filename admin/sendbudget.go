package admin

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// defaultSendBytesInFlight is Options.MaxSendBytesInFlight's default.
const defaultSendBytesInFlight = 64 << 20

// sendBudget bounds the request bytes of HTTP sends in progress (issue
// 12, item 10). A send holds its body, and then the MIME message built
// from it, about twice its size (attachments are never decoded whole,
// attachment_content.go), so a few concurrent large sends could still
// take the process's memory with them; past the bound a send is
// answered 503 with Retry-After before its body is read. A known
// Content-Length is reserved whole up front; a chunked body reserves as
// its bytes arrive. One send larger than the bound alone is let through
// when nothing else is in flight, so the bound never refuses a send the
// size limit allows.
type sendBudget struct {
	mu    sync.Mutex
	limit int64
	used  int64
}

// take reserves n more bytes for a request that holds own already.
func (b *sendBudget) take(n, own int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > own && b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *sendBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// inFlight is what is reserved now (tests).
func (b *sendBudget) inFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errSendBusy is the answer past the bound.
func errSendBusy() error {
	return &apiError{Status: http.StatusServiceUnavailable, Code: codeServiceUnavailable, Retryable: true,
		Message:    "too many large sends are in progress on this server; retry shortly",
		RetryAfter: time.Second}
}

// reserveSend reserves c's body in the send budget and returns the
// release, which the caller runs once the request is done with its
// bytes. A chunked body is wrapped so that each read reserves its bytes.
func (s *Server) reserveSend(c *call) (release func(), err error) {
	b := s.sendBytes
	switch n := c.r.ContentLength; {
	case n > maxSendBodyBytes:
		return func() {}, nil // answered 413 before anything is read
	case n >= 0:
		if !b.take(n, 0) {
			return nil, errSendBusy()
		}
		return func() { b.give(n) }, nil
	}
	cr := &budgetReader{r: c.r.Body, b: b}
	c.r.Body = cr
	return func() { b.give(cr.taken) }, nil
}

// budgetReader reserves the bytes of a body of unknown length as they
// are read; past the bound its Read fails with errSendBusy.
type budgetReader struct {
	r     io.ReadCloser
	b     *sendBudget
	taken int64
}

func (r *budgetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		if !r.b.take(int64(n), r.taken) {
			return 0, errSendBusy()
		}
		r.taken += int64(n)
	}
	return n, err
}

func (r *budgetReader) Close() error { return r.r.Close() }
