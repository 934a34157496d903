package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// maxDisplayName bounds a mailbox's display name, which ends up in the
// From header of its mail.
const maxDisplayName = 200

// mailboxItem is the public shape of a mailbox. Passwords are listed
// separately, under /mailboxes/{id}/passwords.
type mailboxItem struct {
	ID          string      `json:"id"`
	Address     string      `json:"address"`
	DisplayName *string     `json:"display_name"`
	SendScope   store.Scope `json:"send_scope"`
	Status      string      `json:"status"` // active | suspended
	// FailureReports: see store.Mailbox.FailureReports.
	FailureReports bool   `json:"failure_reports"`
	CreatedAt      string `json:"created_at"`
	UpdatedAt      string `json:"updated_at"`
}

func mailboxView(m *store.Mailbox) mailboxItem {
	it := mailboxItem{
		ID: m.ID, Address: m.Address, DisplayName: nullable(m.DisplayName), SendScope: m.SendScope,
		Status: "active", FailureReports: m.FailureReports, CreatedAt: rfc3339(m.CreatedAt), UpdatedAt: rfc3339(m.UpdatedAt),
	}
	if m.Suspended {
		it.Status = "suspended"
	}
	return it
}

// mailboxInput is a decoded mailbox body.
type mailboxInput struct {
	address, displayName httpapi.Opt[string]
	scopeSet, scopeNull  bool
	scope                *scopeInput
	failureReports       httpapi.Opt[bool]
}

func decodeMailbox(o *httpapi.Object) (*mailboxInput, error) {
	if err := o.Allow("address", "display_name", "send_scope", "failure_reports"); err != nil {
		return nil, err
	}
	in := &mailboxInput{}
	var err error
	if in.failureReports, err = httpapi.Field[bool](o, "failure_reports"); err != nil {
		return nil, err
	}
	if in.address, err = httpapi.Field[string](o, "address"); err != nil {
		return nil, err
	}
	if in.displayName, err = httpapi.Field[string](o, "display_name"); err != nil {
		return nil, err
	}
	in.scopeSet, in.scopeNull = o.Has("send_scope"), o.IsNull("send_scope")
	sc, err := o.Child("send_scope")
	if err != nil {
		return nil, err
	}
	if sc != nil {
		if in.scope, err = decodeScope(sc); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// checkMailbox validates the editable fields of in into the returned
// values; the caller applies them. It reads the store (scope references),
// so it runs before the store write, never inside it.
func (s *Server) checkMailbox(teamID string, in *mailboxInput, v *httpapi.Validator, create bool) (display *string, scope *store.Scope) {
	if in.displayName.Set {
		d := ""
		if !in.displayName.Null {
			d = httpapi.CheckText(v, "display_name", strings.TrimSpace(in.displayName.V), maxDisplayName)
		}
		display = &d
	}
	switch {
	case in.scope != nil:
		sc := s.checkScope(teamID, in.scope, v)
		scope = &sc
	case in.scopeNull && !create:
		v.Add("send_scope", httpapi.FieldRequired, `send_scope cannot be null; use {"type":"all"} for every provider`)
	case create:
		scope = &store.Scope{Type: "all"}
	}
	return display, scope
}

func (s *Server) createMailbox(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	in, err := decodeMailbox(o)
	if err != nil {
		return err
	}
	// From the scope check to the commit: see refMu.
	s.refMu.RLock()
	defer s.refMu.RUnlock()
	v := &httpapi.Validator{}
	now := s.now()
	m := &store.Mailbox{ID: store.NewID(store.PrefixMailbox), TeamID: c.team(), CreatedAt: now, UpdatedAt: now}
	switch {
	case !in.address.Set || in.address.Null || strings.TrimSpace(in.address.V) == "":
		v.Add("address", httpapi.FieldRequired, "address is required")
	default:
		m.Address = store.NormalizeAddress(httpapi.CheckEmail(v, "address", in.address.V))
	}
	display, scope := s.checkMailbox(c.team(), in, v, true)
	if display != nil {
		m.DisplayName = *display
	}
	m.SendScope = *scope
	m.FailureReports = in.failureReports.Set && !in.failureReports.Null && in.failureReports.V
	if err := v.Err(); err != nil {
		return err
	}
	if err := s.st.CreateMailbox(m); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return httpapi.ErrConflict("this team already has a mailbox with the address " + m.Address)
		}
		return err
	}
	s.log.Info("mailbox created", "request_id", c.reqID, "mailbox", m.ID, "team", m.TeamID)
	return s.res.mailboxes.answer(c, http.StatusCreated, m)
}

func (s *Server) listMailboxes(c *call) error {
	q := c.r.URL.Query()
	status := q.Get("status")
	if status != "" && status != "active" && status != "suspended" {
		return httpapi.ErrInvalidParam("status", `status must be "active" or "suspended"`)
	}
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Mailboxes(c.team())
	if err != nil {
		return err
	}
	matched := all[:0:0]
	for _, m := range all {
		if status == "" || m.Suspended == (status == "suspended") {
			matched = append(matched, m)
		}
	}
	items, pag := paginate(matched, func(m *store.Mailbox) string { return m.ID }, pg)
	out := make([]mailboxItem, 0, len(items))
	for _, m := range items {
		out = append(out, mailboxView(m))
	}
	c.list(out, pag)
	return nil
}

// patchMailbox changes display_name and send_scope. The address is
// fixed: mail already accepted was checked against it, and passwords were
// handed out for it; a new address is a new mailbox.
func (s *Server) patchMailbox(c *call) error {
	return patch(c, s.res.mailboxes, decodeMailbox, func(cur *store.Mailbox, ver int64, in *mailboxInput) (*store.Mailbox, error) {
		s.refMu.RLock()
		defer s.refMu.RUnlock()
		v := &httpapi.Validator{}
		if in.address.Set && (in.address.Null || store.NormalizeAddress(in.address.V) != cur.Address) {
			v.Add("address", httpapi.FieldNotEditable, "address cannot be changed; create a new mailbox instead")
		}
		display, scope := s.checkMailbox(c.team(), in, v, false)
		if in.failureReports.Set && in.failureReports.Null {
			v.Add("failure_reports", httpapi.FieldRequired, "failure_reports cannot be null; use true or false")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		now := s.now()
		return s.st.UpdateMailbox(c.team(), cur.ID, ver, func(m *store.Mailbox) error {
			if display != nil {
				m.DisplayName = *display
			}
			if scope != nil {
				m.SendScope = *scope
			}
			if in.failureReports.Set && !in.failureReports.Null {
				m.FailureReports = in.failureReports.V
			}
			m.UpdatedAt = now
			return nil
		})
	})
}

func (s *Server) suspendMailbox(c *call) error { return s.setSuspended(c, true) }
func (s *Server) resumeMailbox(c *call) error  { return s.setSuspended(c, false) }

// setSuspended suspends or resumes a mailbox. Suspension takes effect on
// the next credential check of any of its passwords, including those of
// open SMTP sessions. A no-op skips the write, so the version only moves
// on change.
func (s *Server) setSuspended(c *call, suspended bool) error {
	cur, err := s.res.mailboxes.load(c)
	if err != nil {
		return err
	}
	now := s.now()
	m, err := s.st.UpdateMailbox(c.team(), cur.ID, 0, func(m *store.Mailbox) error {
		if m.Suspended == suspended {
			return errUnchanged
		}
		m.Suspended, m.UpdatedAt = suspended, now
		return nil
	})
	if errors.Is(err, errUnchanged) {
		m, err = cur, nil
	}
	if err != nil {
		return storeErr(err, "mailbox")
	}
	if m != cur {
		s.log.Info("mailbox suspension changed", "request_id", c.reqID, "mailbox", m.ID, "suspended", suspended)
	}
	return s.res.mailboxes.answer(c, http.StatusOK, m)
}
