package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/jobs"
)

// verifyDomain is POST /domains/{id}/verify: query DNS now and answer the
// domain with its new status and per-record checks. The check itself is
// the background re-check's (internal/jobs), run on demand.
func (s *Server) verifyDomain(c *call) error {
	d, err := s.res.domains.load(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), jobs.VerifyTimeout)
	defer cancel()
	d, err = jobs.CheckDomain(ctx, s.st, s.opts.DNSResolver, s.opts.Now, d)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return httpapi.ErrUnavailable("DNS did not answer in time; the domain keeps its status, try again")
	}
	if err != nil {
		return storeErr(err, "domain")
	}
	s.log.Info("domain checked", "request_id", c.reqID, "domain_id", d.ID, "domain", d.Domain, "status", d.Status)
	return s.res.domains.answer(c, http.StatusOK, d)
}
