package httpapi

import (
	"errors"
	"net/http"
	"time"
)

// Reading a request's body before its credential is known would let
// anyone hold a connection, and a buffer, for as long as they trickle
// bytes in. So every request starts with a short read deadline
// (Deadlines.Unauthenticated); a request whose credential checks out gets
// the full one (Deadlines.Body) back for its body; and a request refused
// before its handler ran is answered at once and its connection closed,
// without reading the body it offered.

// Deadlines are the read deadlines of a request's body.
type Deadlines struct {
	// Unauthenticated, when > 0, is how long a request may take to be
	// read before its credential has been checked; an authenticated
	// request then gets Body from its start (0: no deadline beyond the
	// http.Server's). Requests refused before their handler ran are
	// answered without reading their body, and their connection is closed.
	Unauthenticated time.Duration
	Body            time.Duration
}

// Start sets the unauthenticated read deadline of a request.
// Errors are ignored: a ResponseWriter without deadlines (a test
// recorder) has no connection to hold.
func (d Deadlines) Start(w http.ResponseWriter) {
	if d.Unauthenticated > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d.Unauthenticated))
	}
}

// Authenticated gives an authenticated request the full body read time,
// counted from the request's start as the server's own ReadTimeout is.
func (d Deadlines) Authenticated(w http.ResponseWriter, r *http.Request) {
	if d.Unauthenticated <= 0 {
		return
	}
	var until time.Time // zero: no deadline
	if d.Body > 0 {
		until = Started(r).Add(d.Body)
	}
	_ = http.NewResponseController(w).SetReadDeadline(until)
}

// Started is when r began (now, outside the server).
func Started(r *http.Request) time.Time {
	if info := InfoFrom(r); info != nil {
		return info.Start
	}
	return time.Now()
}

// RefuseUnread prepares the answer to a request refused before its body
// was read (authentication, permission, rate): the connection closes
// after the answer, so net/http neither reads the offered body before
// answering nor waits for it afterwards to reuse the connection. A
// request without a body keeps its keep-alive connection.
func RefuseUnread(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) || r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	// After the answer, net/http closes the body, reading up to 256 KiB
	// of it; a deadline in the past makes that return at once.
	_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
}
