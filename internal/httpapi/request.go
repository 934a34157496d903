package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Info travels in the request context so that the outer handler can log
// what the inner one learned (the credential's ID) without the handlers
// doing their own logging.
type Info struct {
	// ID is the request's req_… ID, sent back as X-Request-Id and in meta.
	ID string
	// KeyID is the authenticated credential's ID, once known.
	KeyID string
	// Start is when the request began; read deadlines count from it.
	Start time.Time
	// Tracking is set on requests that came in on the tracking listener.
	Tracking bool
}

type ctxKey struct{}

// WithInfo returns r carrying info.
func WithInfo(r *http.Request, info *Info) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
}

// InfoFrom returns the Info r carries, or nil.
func InfoFrom(r *http.Request) *Info {
	info, _ := r.Context().Value(ctxKey{}).(*Info)
	return info
}

// RequestID returns the request's req_… ID ("" outside the server).
func RequestID(r *http.Request) string {
	if info := InfoFrom(r); info != nil {
		return info.ID
	}
	return ""
}

// SetKeyID records the authenticated credential for the access log.
func SetKeyID(r *http.Request, id string) {
	if info := InfoFrom(r); info != nil {
		info.KeyID = id
	}
}

// Fail renders err. Only *Error reaches the client as-is; anything else
// is logged with the request ID and answered with a generic 500, or a 503
// that says so when the store's disk is full.
func Fail(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if errors.As(err, &ae) {
		WriteError(w, RequestID(r), ae)
		return
	}
	if ae := ClusterUnavailable(err); ae != nil {
		log.Warn("cluster write refused", "request_id", RequestID(r), "method", r.Method, "path", r.URL.Path, "err", err)
		WriteError(w, RequestID(r), ae)
		return
	}
	log.Error("admin request failed", "request_id", RequestID(r), "method", r.Method, "path", r.URL.Path, "err", err)
	if ae := StorageFull(err); ae != nil {
		WriteError(w, RequestID(r), ae)
		return
	}
	WriteError(w, RequestID(r), ErrInternal(RequestID(r)))
}

// ErrInternal is the generic answer to an error whose detail only the log
// may see: the client gets the request ID to quote.
func ErrInternal(reqID string) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "internal error; quote request " + reqID + " when reporting it", Retryable: true}
}
