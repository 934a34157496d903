package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// operatorAuth checks the operator token, as one authentication attempt
// (httpapi.Attempt). Both sides are hashed before the constant-time compare
// so that the comparison time does not reveal the token's length either.
// Without a configured token, or without a token in the request, nothing
// is guessed and nothing counted.
func (s *Server) operatorAuth(r *http.Request) error {
	if s.opts.OperatorToken == "" {
		// Say which setting turns it on: a bare 401 sent operators
		// looking for a token that does not exist.
		return httpapi.ErrAuthRequired("the operator API is off: set operator_token in the daemon's config (or SMTPMUX_OPERATOR_TOKEN in its environment) and restart it")
	}
	tok, ok := httpapi.Bearer(r)
	if !ok {
		return httpapi.ErrAuthRequired("missing Authorization header: send \"Authorization: Bearer <operator token>\"")
	}
	return httpapi.Attempt(s.opts.HTTP.AuthAttempts, r, func() error {
		a := sha256.Sum256([]byte(tok))
		b := sha256.Sum256([]byte(s.opts.OperatorToken))
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			return httpapi.ErrAuthRequired("invalid operator token")
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
			var ae *httpapi.Error
			errors.As(err, &ae)
			httpapi.WriteError(w, id, ae)
			return
		}
		h.ServeHTTP(w, r)
	})
}
