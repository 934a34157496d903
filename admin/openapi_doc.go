package admin

import (
	"net/http"

	"github.com/smtpmux/smtpmux/admin/openapi"
)

// openapiDoc is GET /api/v1/openapi.json: the API's OpenAPI 3.1 document
// (admin/openapi/openapi.json), served as is and without authentication,
// since it describes the public contract and holds nothing secret. It is
// the one Management API answer without the envelope: client generators
// expect the bare document.
func (s *Server) openapiDoc(c *call) error {
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	// Unlike the rest of the API this answer is the same for everyone and
	// changes only with the binary, so a client may cache it briefly.
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	c.w.WriteHeader(http.StatusOK)
	if c.r.Method != http.MethodHead {
		_, _ = c.w.Write(openapi.JSON)
	}
	return nil
}
