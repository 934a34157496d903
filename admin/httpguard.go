package admin

import (
	"errors"
	"net/http"
	"time"
)

// Reading a request's body before its credential is known would let
// anyone hold a connection, and a buffer, for as long as they trickle
// bytes in. So every request starts with a short read
// deadline (Options.UnauthenticatedBodyTimeout); a request whose
// credential checks out gets the full one (Options.BodyReadTimeout) back
// for its body; and a request refused before its handler ran is answered
// at once and its connection closed, without reading the body it offered.

// startReadDeadline sets the unauthenticated read deadline of a request.
// Errors are ignored: a ResponseWriter without deadlines (a test
// recorder) has no connection to hold.
func (s *Server) startReadDeadline(w http.ResponseWriter) {
	if d := s.opts.UnauthenticatedBodyTimeout; d > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	}
}

// authenticatedReadDeadline gives an authenticated request the full body
// read time, counted from the request's start as the server's own
// ReadTimeout is.
func (s *Server) authenticatedReadDeadline(c *call) {
	if s.opts.UnauthenticatedBodyTimeout <= 0 {
		return
	}
	var until time.Time // zero: no deadline
	if d := s.opts.BodyReadTimeout; d > 0 {
		start := time.Now()
		if info := infoFrom(c.r); info != nil {
			start = info.start
		}
		until = start.Add(d)
	}
	_ = http.NewResponseController(c.w).SetReadDeadline(until)
}

// refuseUnread prepares the answer to a request refused before its body
// was read (authentication, permission, rate): the connection closes
// after the answer, so net/http neither reads the offered body before
// answering nor waits for it afterwards to reuse the connection. A
// request without a body keeps its keep-alive connection.
func refuseUnread(c *call, err error) {
	var ae *apiError
	if !errors.As(err, &ae) || c.r.ContentLength == 0 {
		return
	}
	c.w.Header().Set("Connection", "close")
	// After the answer, net/http closes the body, reading up to 256 KiB
	// of it; a deadline in the past makes that return at once.
	_ = http.NewResponseController(c.w).SetReadDeadline(time.Unix(1, 0))
}
