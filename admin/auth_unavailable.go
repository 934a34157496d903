package admin

import (
	"net/http"
	"time"
)

// authUnavailable is the answer when a credential could not be checked
// because the store failed to answer (not because the credential is
// wrong): 503 service_unavailable, retryable, never 401 — a client must
// not drop a good key because a read failed. The detail goes to the log.
func (s *Server) authUnavailable(r *http.Request, err error) error {
	s.log.Error("credential check failed", "request_id", requestID(r), "path", r.URL.Path, "err", err)
	return &apiError{Status: http.StatusServiceUnavailable, Code: codeServiceUnavailable, Retryable: true,
		Message: "the credential could not be checked right now; try again later", RetryAfter: 5 * time.Second}
}
