package sendapi

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
)

// defaultSendBytesInFlight is Config.MaxBytesInFlight's default.
const defaultSendBytesInFlight = 64 << 20

// defaultSendBodyTimeout is Config.BodyTimeout's default.
const defaultSendBodyTimeout = 60 * time.Second

// sendBodyMinRate is the pace an HTTP send's body must keep once its
// grace (Config.BodyTimeout) is spent: 32 KiB/s, so a 35 MB body
// may take 18 minutes plus the grace, and the 10-minute authenticated
// read timeout is what ends it first.
const sendBodyMinRate = 32 << 10

// sendBudget bounds the bytes HTTP sends in progress hold (issue 12,
// item 10). A send holds its body, and then the MIME message built from
// it, about twice its size (attachments are never decoded whole,
// attachment_content.go), so a few concurrent large sends could still
// take the process's memory with them; past the bound a send is
// answered 503 with Retry-After.
//
// What is reserved is the buffer the body is read into, as it grows
// with the bytes that arrived (readAllSized), never the length a client
// announced: a Content-Length is a promise that costs nothing to make,
// and reserving it up front let one stalled upload hold the whole budget
// and every other team's sends answered 503 (audit of item 10). One
// team's sends together hold at most half the bound while another of its
// sends is in flight, so one tenant cannot take all of it either. One
// send larger than the bound alone is let through when nothing else is
// in flight, so the bound never refuses a send the size limit allows.
type sendBudget struct {
	mu    sync.Mutex
	limit int64
	used  int64
	teams map[string]int64
}

// take reserves n more bytes for a send of team that holds own already.
func (b *sendBudget) take(team string, n, own int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > own && b.used+n > b.limit {
		return false
	}
	if t := b.teams[team]; t > own && t+n > b.limit/2 {
		return false
	}
	if b.teams == nil {
		b.teams = map[string]int64{}
	}
	b.used += n
	b.teams[team] += n
	return true
}

func (b *sendBudget) give(team string, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.teams[team] -= n; b.teams[team] <= 0 {
		delete(b.teams, team)
	}
}

// inFlight is what is reserved now (tests).
func (b *sendBudget) inFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errSendBusy is the answer past the bound.
func errSendBusy() error {
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeServiceUnavailable, Retryable: true,
		Message:    "too many large sends are in progress on this server; retry shortly",
		RetryAfter: time.Second}
}

// reserveSend wraps c's body so that reading it reserves its buffer in
// the send budget and keeps the body's read deadline in step with the
// bytes that arrived; release gives the reservation back once the
// request is done with its bytes.
func (s *Handler) reserveSend(c *call) (body *budgetBody, release func()) {
	if c.r.ContentLength > maxSendBodyBytes {
		return nil, func() {} // answered 413 before anything is read
	}
	bb := &budgetBody{ReadCloser: c.r.Body, b: s.sendBytes, team: c.send.TeamID}
	if d := s.opts.Deadlines.Body; d > 0 && s.opts.Deadlines.Unauthenticated > 0 {
		bb.rc = http.NewResponseController(c.w)
		bb.start = httpapi.Started(c.r)
		bb.grace, bb.last = s.opts.BodyTimeout, bb.start.Add(d)
		bb.extend(0)
	}
	c.r.Body = bb
	return bb, func() { bb.b.give(bb.team, bb.held) }
}

// budgetBody is a send's request body. httpapi.ReadRaw grows its buffer
// through Grow, which reserves in the budget; Read moves the read deadline.
type budgetBody struct {
	io.ReadCloser
	b       *sendBudget
	team    string
	held    int64 // reserved in b
	refused bool  // grow was refused: the rest of the body is not read

	// The read deadline: start + grace + arrived/sendBodyMinRate, never
	// past last (the authenticated read timeout). rc is nil when the
	// server manages no deadlines.
	rc          *http.ResponseController
	start, last time.Time
	grace       time.Duration
	arrived     int64
	until       time.Time
}

// Grow reserves n more bytes of buffer; past the bound it fails with
// errSendBusy.
func (bb *budgetBody) Grow(n int64) error {
	if !bb.b.take(bb.team, n, bb.held) {
		bb.refused = true
		return errSendBusy()
	}
	bb.held += n
	return nil
}

func (bb *budgetBody) Read(p []byte) (int, error) {
	n, err := bb.ReadCloser.Read(p)
	if n > 0 && bb.rc != nil {
		bb.extend(n)
	}
	return n, err
}

// extend counts n more bytes arrived and moves the read deadline when it
// has moved by a second or more (a deadline per read would be churn).
func (bb *budgetBody) extend(n int) {
	bb.arrived += int64(n)
	until := bb.start.Add(bb.grace + time.Duration(bb.arrived)*time.Second/sendBodyMinRate)
	if until.After(bb.last) {
		until = bb.last
	}
	if !bb.until.IsZero() && until.Sub(bb.until) < time.Second {
		return
	}
	bb.until = until
	_ = bb.rc.SetReadDeadline(until)
}
