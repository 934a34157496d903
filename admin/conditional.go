package admin

import (
	"net/http"
	"strings"
)

// Conditional GETs (SPEC §3, as the hosted API does): a single-resource
// GET answers with a weak ETag; a client that sends it back in
// If-None-Match gets 304 Not Modified with no body while the resource is
// unchanged. The handlers are not involved: they set ETag and write a 200
// as always, and notModifiedWriter turns that 200 into the 304, so no
// route can forget it and the comparison lives in one place.

// notModifiedWriter wraps the response of a GET or HEAD that carried
// If-None-Match.
type notModifiedWriter struct {
	http.ResponseWriter
	ifNoneMatch string
	// dropBody is set once the status went out as 304: whatever the
	// handler writes next is the 200's body, which a 304 must not have.
	dropBody bool
}

func (w *notModifiedWriter) WriteHeader(code int) {
	if code == http.StatusOK && etagListMatches(w.ifNoneMatch, w.Header().Get("ETag")) {
		h := w.Header()
		// A 304 carries the validator and caching headers of the 200 it
		// stands for (RFC 9110 §15.4.5), not the description of a body.
		h.Del("Content-Type")
		h.Del("Content-Length")
		w.dropBody = true
		w.ResponseWriter.WriteHeader(http.StatusNotModified)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *notModifiedWriter) Write(b []byte) (int, error) {
	if w.dropBody {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *notModifiedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// etagListMatches reports whether the If-None-Match list names current,
// the resource's ETag, using the weak comparison RFC 9110 §13.1.2
// prescribes for If-None-Match: W/"3" and "3" are the same tag. "*"
// matches any existing representation. A response without an ETag never
// matches.
func etagListMatches(list, current string) bool {
	if current == "" {
		return false
	}
	cur := strings.TrimPrefix(current, "W/")
	for tag := range strings.SplitSeq(list, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || tag != "" && strings.TrimPrefix(tag, "W/") == cur {
			return true
		}
	}
	return false
}

// conditional wraps c's writer when the request is a GET or HEAD with
// If-None-Match.
func conditional(c *call) {
	if c.r.Method != http.MethodGet && c.r.Method != http.MethodHead {
		return
	}
	if inm := c.r.Header.Get("If-None-Match"); strings.TrimSpace(inm) != "" {
		c.w = &notModifiedWriter{ResponseWriter: c.w, ifNoneMatch: inm}
	}
}
