package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// AuthAttempts is the per-address limit on failed authentications that
// SMTP AUTH and the HTTP Sending API share (smtp.auth_fail_limit a
// minute). The secrets admin checks itself — the operator token and
// root keys — count against it too: without that, guesses at them were
// never limited. cmd implements it over relay.Server.ReserveAuth.
type AuthAttempts interface {
	// ReserveAuth counts one attempt from remoteIP before its secret is
	// checked, so that parallel guesses cannot all pass a limit none of
	// them has counted yet. When !ok the address is past its limit: the
	// secret is not checked, and the client may retry after wait.
	// Otherwise done ends the attempt: a failed one stays counted, any
	// other gives its count back.
	ReserveAuth(remoteIP string) (ok bool, wait time.Duration, done func(failed bool))
}

// errAuthLimited is the answer to an address past its failed attempts.
func errAuthLimited(wait time.Duration) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Code: codeRateLimited, Retryable: true,
		Message:    "too many failed authentications from this address; retry later",
		RetryAfter: max(wait, time.Second)}
}

// authAttempt runs check as one authentication attempt of r's client
// address: refused unchecked past the address's limit, counted when it
// fails (401). A refused permission (403) or a store that could not
// answer (503) is not a failed guess and gives its count back.
func (s *Server) authAttempt(r *http.Request, check func() error) error {
	if s.opts.AuthAttempts == nil {
		return check()
	}
	ok, wait, done := s.opts.AuthAttempts.ReserveAuth(clientIP(r))
	if !ok {
		return errAuthLimited(wait)
	}
	err := check()
	var ae *apiError
	done(errors.As(err, &ae) && ae.Status == http.StatusUnauthorized)
	return err
}

// operatorAuth checks the operator token, as one authentication attempt
// (authAttempt). Both sides are hashed before the constant-time compare
// so that the comparison time does not reveal the token's length either.
// Without a configured token, or without a token in the request, nothing
// is guessed and nothing counted.
func (s *Server) operatorAuth(r *http.Request) error {
	if s.opts.OperatorToken == "" {
		// Say which setting turns it on: a bare 401 sent operators
		// looking for a token that does not exist.
		return errAuthRequired("the operator API is off: set operator_token in the daemon's config (or SMTPMUX_OPERATOR_TOKEN in its environment) and restart it")
	}
	tok, ok := bearer(r)
	if !ok {
		return errAuthRequired("missing Authorization header: send \"Authorization: Bearer <operator token>\"")
	}
	return s.authAttempt(r, func() error {
		a := sha256.Sum256([]byte(tok))
		b := sha256.Sum256([]byte(s.opts.OperatorToken))
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			return errAuthRequired("invalid operator token")
		}
		return nil
	})
}

// OperatorOnly serves h only to requests that carry the operator token,
// checked exactly as the operator API checks it (operatorAuth); others
// get the API's JSON error. cmd puts /metrics behind it when there is no
// [metrics] listener.
func (s *Server) OperatorOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.operatorAuth(r); err != nil {
			id := store.NewID(store.PrefixRequest)
			w.Header().Set("X-Request-Id", id)
			var ae *apiError
			errors.As(err, &ae)
			writeError(w, id, ae)
			return
		}
		h.ServeHTTP(w, r)
	})
}
