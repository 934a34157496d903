package dashboard

import (
	"net/http"
	"net/url"
	"strings"
)

// suppression is one entry of GET /suppressions.
type suppression struct {
	Email     string  `json:"email"`
	Reason    string  `json:"reason"` // hard_bounce, soft_bounce, complaint, manual…
	Source    string  `json:"source"`
	MessageID *string `json:"message_id"`
	Detail    *string `json:"detail"`
	CreatedAt string  `json:"created_at"`
}

// ReasonText is the entry's reason as the page words it.
func (x suppression) ReasonText() string {
	switch x.Reason {
	case "hard_bounce":
		return "hard bounce"
	case "soft_bounces":
		return "soft bounces in a row"
	case "complaint":
		return "complaint"
	case "manual":
		return "added by hand"
	}
	return x.Reason
}

type suppressionsData struct {
	List       []suppression
	Search     string
	NextURL    string // the next page, whole: html/template would escape a bare query's = and &
	Error      string
	Values     map[string]string
	Errors     map[string]string
	CanCreate  bool
	CanDelete  bool
	CanMessage bool // the key may open the message an entry came from
}

// suppressions is the team's suppression list, searched and paged by the
// API (?search= is a part of the address; the cursor is the API's).
func (d *Dashboard) suppressions(w http.ResponseWriter, r *http.Request, s *session) {
	d.suppressionsPage(w, r, s, http.StatusOK, suppressionsData{})
}

func (d *Dashboard) suppressionsPage(w http.ResponseWriter, r *http.Request, s *session, status int, data suppressionsData) {
	in := r.URL.Query()
	q := url.Values{"limit": {"50"}}
	data.Search = strings.TrimSpace(in.Get("search"))
	if data.Search != "" {
		q.Set("search", data.Search)
	}
	if c := in.Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	a, err := d.get(r, s, "/suppressions", q, &data.List)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	if a.Pagination.HasMore && a.Pagination.NextCursor != "" {
		next := url.Values{"cursor": {a.Pagination.NextCursor}}
		if data.Search != "" {
			next.Set("search", data.Search)
		}
		data.NextURL = "/suppressions?" + next.Encode()
	}
	data.CanCreate, data.CanDelete = s.allows("suppression.create"), s.allows("suppression.delete")
	data.CanMessage = s.allows("email.read")
	if data.Values == nil {
		data.Values = map[string]string{}
	}
	if data.Errors == nil {
		data.Errors = map[string]string{}
	}
	d.render(w, r, status, "suppressions", s, page{Title: "Suppressions", Nav: "suppressions", Data: data})
}

// addSuppression is POST /suppressions with the form's address and
// reason; the API validates both and keeps an already listed address as
// it was.
func (d *Dashboard) addSuppression(w http.ResponseWriter, r *http.Request, s *session) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	body := map[string]any{"email": email, "reason": r.PostFormValue("reason")}
	a := d.call(r, s, http.MethodPost, "/suppressions", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.suppressionsPage(w, r, s, http.StatusUnprocessableEntity, suppressionsData{Error: a.Error.Error(),
			Values: formValues(r), Errors: a.Error.fieldErrors()})
		return
	}
	msg := "Suppressed: mail to " + email + " is no longer sent."
	if a.Status == http.StatusOK {
		msg = email + " was already on the list; its entry is unchanged."
	}
	d.redirect(w, r, s, "/suppressions?search="+url.QueryEscape(email), msg, false)
}

// removeSuppression is DELETE /suppressions/{email}. The address comes in
// the form, not the path: an address may hold characters a path would
// have to carry escaped.
func (d *Dashboard) removeSuppression(w http.ResponseWriter, r *http.Request, s *session) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	if email == "" {
		d.redirect(w, r, s, "/suppressions", "Not removed: no address.", true)
		return
	}
	a := d.call(r, s, http.MethodDelete, "/suppressions/"+url.PathEscape(email), nil, nil)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/suppressions", "Not removed: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/suppressions", "Removed: mail to "+email+" is accepted again.", false)
}
