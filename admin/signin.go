package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// SignInError is why a dashboard sign-in was refused: the Management
// API's answer to the same credential (401 invalid or revoked, 403 a
// sending key, 429 too many failures from this address, 503 store).
type SignInError struct {
	Status     int
	Message    string
	RetryAfter time.Duration
}

func (e *SignInError) Error() string { return e.Message }

// SignInRoot checks secret exactly as the Management API checks a Bearer
// root key — one authentication attempt of r's client address, counted
// against the shared per-address failure limit, sending keys refused —
// and returns the key. The dashboard signs in with it, so that a key the
// API would refuse cannot open a session either.
func (s *Server) SignInRoot(r *http.Request, secret string) (*store.APIKey, error) {
	key, err := s.authenticate(withBearer(r, secret))
	return key, signInErr(err)
}

// SignInOperator checks the operator token as the operator API does
// (operatorAuth): counted per address, compared in constant time.
func (s *Server) SignInOperator(r *http.Request, token string) error {
	return signInErr(s.operatorAuth(withBearer(r, token)))
}

// withBearer is r, without its body, carrying secret as its Bearer token.
func withBearer(r *http.Request, secret string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = http.NoBody, 0
	r2.Header = http.Header{}
	r2.Header.Set("Authorization", "Bearer "+secret)
	return r2
}

func signInErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *httpapi.Error
	if errors.As(err, &ae) {
		return &SignInError{Status: ae.Status, Message: ae.Message, RetryAfter: ae.RetryAfter}
	}
	return &SignInError{Status: http.StatusServiceUnavailable, Message: "sign-in is unavailable; try again"}
}
