package admin

import (
	"net/http"
	"time"
)

// backup is GET /api/v1/operator/backup: an online snapshot of the store,
// streamed as it is read (a consistent bbolt read transaction, so SMTP
// and API writes go on meanwhile). It is an operator route like any
// other — token, per-address failure limit, rate limit, request ID,
// access log — and differs only in its body: bytes, not the JSON
// envelope, and no write deadline.
func (s *Server) backup(c *call) error {
	// A large store takes longer than the server's write timeout.
	http.NewResponseController(c.w).SetWriteDeadline(time.Time{})
	h := c.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="smtpmux-`+s.now().Format("20060102T150405Z")+`.db"`)
	if _, err := s.st.Backup(c.w); err != nil {
		// Headers are gone; cutting the stream short tells the client
		// (the CLI also checks the file before keeping it).
		s.log.Error("backup failed", "request_id", c.reqID, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}
