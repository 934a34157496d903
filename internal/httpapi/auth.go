package httpapi

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Bearer extracts the token of an "Authorization: Bearer <token>" header.
// The scheme is case-insensitive (RFC 9110 §11.1).
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// ClientIP is the address a request came from, for per-address limits.
// It is the TCP peer: forwarding headers are the client's to forge.
func ClientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// AuthAttempts is the per-address limit on failed authentications that
// SMTP AUTH and the HTTP APIs share (smtp.auth_fail_limit a minute). The
// secrets the HTTP side checks itself — the operator token and root keys
// — count against it too: without that, guesses at them were never
// limited. cmd implements it over relay.Server.ReserveAuth.
type AuthAttempts interface {
	// ReserveAuth counts one attempt from remoteIP before its secret is
	// checked, so that parallel guesses cannot all pass a limit none of
	// them has counted yet. When !ok the address is past its limit: the
	// secret is not checked, and the client may retry after wait.
	// Otherwise done ends the attempt: a failed one stays counted, any
	// other gives its count back.
	ReserveAuth(remoteIP string) (ok bool, wait time.Duration, done func(failed bool))
}

// ErrAuthLimited is the answer to an address past its failed attempts.
func ErrAuthLimited(wait time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited, Retryable: true,
		Message:    "too many failed authentications from this address; retry later",
		RetryAfter: max(wait, time.Second)}
}

// Attempt runs check as one authentication attempt of r's client address
// against limit (nil: no limit): refused unchecked past the address's
// limit, counted when it fails (401). A refused permission (403) or a
// store that could not answer (503) is not a failed guess and gives its
// count back.
func Attempt(limit AuthAttempts, r *http.Request, check func() error) error {
	if limit == nil {
		return check()
	}
	ok, wait, done := limit.ReserveAuth(ClientIP(r))
	if !ok {
		return ErrAuthLimited(wait)
	}
	err := check()
	var ae *Error
	done(errors.As(err, &ae) && ae.Status == http.StatusUnauthorized)
	return err
}

// AuthUnavailable is the answer when a credential could not be checked
// because the store failed to answer (not because the credential is
// wrong): 503 service_unavailable, retryable, never 401 — a client must
// not drop a good key because a read failed. The detail goes to log.
func AuthUnavailable(log *slog.Logger, r *http.Request, err error) error {
	log.Error("credential check failed", "request_id", RequestID(r), "path", r.URL.Path, "err", err)
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable, Retryable: true,
		Message: "the credential could not be checked right now; try again later", RetryAfter: 5 * time.Second}
}
