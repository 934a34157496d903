package admin

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// The suppression list's management routes (SPEC §13). Entries are keyed
// by address, one list per team: every read and write names the caller's
// team, so no request reaches another team's entries, and an address
// another team has listed is simply not on this one (404).
const (
	permSuppressionRead   = "suppression.read"
	permSuppressionCreate = "suppression.create"
	permSuppressionDelete = "suppression.delete"
	// maxSuppressionReason bounds a manual entry's reason.
	maxSuppressionReason = 500
	// maxSuppressionSearch bounds ?search=.
	maxSuppressionSearch = 254
)

// suppressionItem is the public shape of one entry.
type suppressionItem struct {
	Email     string  `json:"email"`
	Reason    string  `json:"reason"`
	Source    string  `json:"source"`
	MessageID *string `json:"message_id"`
	Detail    *string `json:"detail"`
	CreatedAt string  `json:"created_at"`
}

func suppressionView(s *store.Suppression) suppressionItem {
	return suppressionItem{Email: s.Address, Reason: s.Reason, Source: s.Source, MessageID: nullable(s.MessageID),
		Detail: nullable(s.Detail), CreatedAt: rfc3339(s.CreatedAt)}
}

// listSuppressions is GET /suppressions: address order, cursor
// pagination (the cursor is the page's last address, base64url as every
// cursor of the API), ?search= a case-insensitive part of the address.
func (s *Server) listSuppressions(c *call) error {
	q := c.r.URL.Query()
	pg, err := parsePage(withoutCursor(c.r))
	if err != nil {
		return err
	}
	after := ""
	if cur := q.Get("cursor"); cur != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cur)
		v := &httpapi.Validator{}
		if err != nil || len(raw) == 0 {
			return httpapi.ErrInvalidParam("cursor", "cursor is not one this API returned")
		}
		if httpapi.CheckEmail(v, "cursor", string(raw)); v.Err() != nil {
			return httpapi.ErrInvalidParam("cursor", "cursor is not one this API returned")
		}
		after = string(raw)
	}
	search := q.Get("search")
	if len(search) > maxSuppressionSearch || httpapi.HasControl(search) {
		return httpapi.ErrInvalidParam("search", "search must be at most %d characters of text", maxSuppressionSearch)
	}
	// A page reads a bounded number of entries (store.Suppressions): a
	// search that matches little may answer a short page, even an empty
	// one, with has_more and a cursor to go on from.
	list, next, err := s.st.Suppressions(c.team(), after, search, pg.limit)
	if err != nil {
		return err
	}
	out := make([]suppressionItem, 0, len(list))
	for _, sup := range list {
		out = append(out, suppressionView(sup))
	}
	p := httpapi.Pagination{HasMore: next != ""}
	if next != "" {
		cur := base64.RawURLEncoding.EncodeToString([]byte(next))
		p.NextCursor = &cur
	}
	c.list(out, p)
	return nil
}

// withoutCursor is r with its cursor parameter removed, so that
// parsePage (whose cursors are IDs) reads only limit here.
func withoutCursor(r *http.Request) *http.Request {
	q := r.URL.Query()
	q.Del("cursor")
	u := *r.URL
	u.RawQuery = q.Encode()
	r2 := *r
	r2.URL = &u
	return &r2
}

// createSuppression is POST /suppressions {"email", "reason"}: a manual
// entry, which needs a reason (what the list is for is the team's record
// of why mail to an address stopped). An address already listed answers
// 200 with the existing entry, unchanged; a new one 201.
func (s *Server) createSuppression(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	if err := o.Allow("email", "reason"); err != nil {
		return err
	}
	email, err := httpapi.Field[string](o, "email")
	if err != nil {
		return err
	}
	reason, err := httpapi.Field[string](o, "reason")
	if err != nil {
		return err
	}
	v := &httpapi.Validator{}
	addr := ""
	if !email.Set || email.Null || strings.TrimSpace(email.V) == "" {
		v.Add("email", httpapi.FieldRequired, "email is required")
	} else {
		addr = httpapi.CheckEmail(v, "email", email.V)
	}
	if !reason.Set || reason.Null || strings.TrimSpace(reason.V) == "" {
		v.Add("reason", httpapi.FieldRequired, "reason is required for a manual suppression")
	} else {
		httpapi.CheckText(v, "reason", reason.V, maxSuppressionReason)
	}
	if err := v.Err(); err != nil {
		return err
	}
	sup := &store.Suppression{TeamID: c.team(), Address: strings.ToLower(addr), Reason: store.SuppressManual,
		Source: "api", Detail: strings.TrimSpace(reason.V), CreatedAt: s.now()}
	cur, created, err := s.st.AddSuppression(sup)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.w.Header().Set("Location", "/api/v1/suppressions/"+url.PathEscape(cur.Address))
		s.log.Info("suppression added", "request_id", c.reqID, "team", c.team(), "reason", store.SuppressManual)
	}
	c.ok(status, suppressionView(cur))
	return nil
}

// suppressionEmail reads {email} of an item route; a value that is not
// an address is a 404 (no such entry) without a store read.
func suppressionEmail(c *call) (string, error) {
	raw := c.r.PathValue("email")
	v := &httpapi.Validator{}
	if httpapi.CheckEmail(v, "email", raw); raw == "" || v.Err() != nil {
		return "", httpapi.ErrNotFound("suppression")
	}
	return raw, nil
}

// getSuppression is GET /suppressions/{email}.
func (s *Server) getSuppression(c *call) error {
	addr, err := suppressionEmail(c)
	if err != nil {
		return err
	}
	sup, err := s.st.Suppressed(c.team(), addr)
	if err != nil {
		return err
	}
	if sup == nil {
		return httpapi.ErrNotFound("suppression")
	}
	c.ok(http.StatusOK, suppressionView(sup))
	return nil
}

// deleteSuppression is DELETE /suppressions/{email}: mail to the address
// is accepted again (and its soft-bounce count starts over).
func (s *Server) deleteSuppression(c *call) error {
	addr, err := suppressionEmail(c)
	if err != nil {
		return err
	}
	if err := s.st.DeleteSuppression(c.team(), addr); errors.Is(err, store.ErrNotFound) {
		return httpapi.ErrNotFound("suppression")
	} else if err != nil {
		return err
	}
	s.log.Info("suppression removed", "request_id", c.reqID, "team", c.team())
	c.ok(http.StatusOK, map[string]any{"email": strings.ToLower(addr), "deleted": true})
	return nil
}
