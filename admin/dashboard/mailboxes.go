package dashboard

import (
	"net/http"
	"net/url"
	"strings"
)

type mailbox struct {
	ID          string  `json:"id"`
	Address     string  `json:"address"`
	DisplayName *string `json:"display_name"`
	SendScope   struct {
		Type     string   `json:"type"`
		GroupIDs []string `json:"group_public_ids"`
	} `json:"send_scope"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
}

type mailboxPassword struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	Prefix     string  `json:"prefix"`
	Status     string  `json:"status"`
	LastUsedAt *string `json:"last_used_at"`
	Password   string  `json:"password"` // only in the create answer
}

type mailboxesData struct {
	Mailboxes  []mailbox
	Mailbox    *mailbox
	Passwords  []mailboxPassword
	Created    *mailboxPassword
	Groups     []group
	Names      map[string]string
	Error      string
	Values     map[string]string
	NextCursor string
	CanCreate  bool
	CanUpdate  bool
}

func (d *Dashboard) mailboxes(w http.ResponseWriter, r *http.Request, s *session) {
	d.mailboxesPage(w, r, s, http.StatusOK, mailboxesData{})
}

func (d *Dashboard) mailboxesPage(w http.ResponseWriter, r *http.Request, s *session, status int, data mailboxesData) {
	next, errText, done := d.listPage(w, r, s, "/mailboxes", &data.Mailboxes)
	if done {
		return
	}
	if data.Error == "" {
		data.Error = errText
	}
	data.NextCursor = next
	data.Groups, data.Names = d.groupsAndNames(r, s)
	data.CanCreate, data.CanUpdate = s.allows("mailbox.create"), s.allows("mailbox.update")
	if data.Values == nil {
		data.Values = map[string]string{}
	}
	d.render(w, r, status, "mailboxes", s, page{Title: "Mailboxes", Nav: "mailboxes", Data: data})
}

func (d *Dashboard) createMailbox(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]any{"address": strings.TrimSpace(f.Get("address"))}
	if v := strings.TrimSpace(f.Get("display_name")); v != "" {
		body["display_name"] = v
	}
	if g := f.Get("group_id"); g != "" {
		body["send_scope"] = map[string]any{"type": "group", "group_public_ids": []string{g}}
	}
	var created mailbox
	a := d.call(r, s, http.MethodPost, "/mailboxes", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&created); err != nil {
		d.mailboxesPage(w, r, s, http.StatusUnprocessableEntity, mailboxesData{Error: err.Error(), Values: formValues(r)})
		return
	}
	d.redirect(w, r, s, "/mailboxes/"+created.ID, "Mailbox created. Make it a password to send with.", false)
}

// mailboxPage is one mailbox with its passwords.
func (d *Dashboard) mailboxPage(w http.ResponseWriter, r *http.Request, s *session) {
	created, _ := revealed(r, "/mailboxes/"+pathEscape(r.PathValue("id"))).(*mailboxPassword)
	d.showMailbox(w, r, s, http.StatusOK, mailboxesData{Created: created})
}

func (d *Dashboard) showMailbox(w http.ResponseWriter, r *http.Request, s *session, status int, data mailboxesData) {
	id := pathEscape(r.PathValue("id"))
	var m mailbox
	a, err := d.get(r, s, "/mailboxes/"+id, nil, &m)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		d.render(w, r, a.Status, "error", s, page{Title: "Mailbox", Nav: "mailboxes", Message: err.Error()})
		return
	}
	data.Mailbox = &m
	if _, err := d.get(r, s, "/mailboxes/"+id+"/passwords", url.Values{"limit": {"100"}}, &data.Passwords); err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	data.Names = d.groupNames(r, s)
	data.CanUpdate = s.allows("mailbox.update")
	d.render(w, r, status, "mailbox", s, page{Title: m.Address, Nav: "mailboxes", Data: data})
}

// createMailboxPassword makes a password; it is shown once, on the GET
// the answer redirects to (reveal.go).
func (d *Dashboard) createMailboxPassword(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]any{}
	if n := strings.TrimSpace(r.PostFormValue("name")); n != "" {
		body["name"] = n
	}
	var created mailboxPassword
	a := d.call(r, s, http.MethodPost, "/mailboxes/"+pathEscape(r.PathValue("id"))+"/passwords", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&created); err != nil {
		d.showMailbox(w, r, s, http.StatusUnprocessableEntity, mailboxesData{Error: err.Error()})
		return
	}
	d.revealRedirect(w, r, s, "/mailboxes/"+pathEscape(r.PathValue("id")), &created)
}

func (d *Dashboard) revokeMailboxPassword(w http.ResponseWriter, r *http.Request, s *session) {
	id := pathEscape(r.PathValue("id"))
	a := d.call(r, s, http.MethodDelete, "/mailboxes/"+id+"/passwords/"+pathEscape(r.PathValue("pw")), nil, nil)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/mailboxes/"+id, "Not revoked: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/mailboxes/"+id, "Password revoked.", false)
}

// setMailbox suspends or resumes a mailbox.
func (d *Dashboard) setMailbox(verb, done string) handler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		id := pathEscape(r.PathValue("id"))
		a := d.call(r, s, http.MethodPost, "/mailboxes/"+id+"/"+verb, nil, map[string]any{})
		if d.signedOut(w, r, s, a) {
			return
		}
		if !a.OK {
			d.redirect(w, r, s, "/mailboxes/"+id, "Could not "+verb+": "+a.Error.Message, true)
			return
		}
		d.redirect(w, r, s, "/mailboxes/"+id, done, false)
	}
}
