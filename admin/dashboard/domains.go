package dashboard

import (
	"net/http"
	"strings"
)

type domain struct {
	ID           string `json:"id"`
	Domain       string `json:"domain"`
	Status       string `json:"status"`
	DKIMSelector string `json:"dkim_selector"`
	Records      []struct {
		Purpose  string `json:"purpose"`
		Type     string `json:"type"`
		Name     string `json:"name"`
		Value    string `json:"value"`
		Required bool   `json:"required"`
	} `json:"records"`
	Checks []struct {
		Name     string   `json:"name"`
		Record   string   `json:"record"`
		Status   string   `json:"status"`
		Required bool     `json:"required"`
		Found    []string `json:"found"`
		Detail   string   `json:"detail"`
	} `json:"checks"`
	LastCheckedAt *string `json:"last_checked_at"`
	VerifiedAt    *string `json:"verified_at"`
}

type domainsData struct {
	Domains    []domain
	Domain     *domain
	Error      string
	Value      string
	NextCursor string
	CanCreate  bool
	CanVerify  bool
	CanDelete  bool
}

func (d *Dashboard) domainPerms(s *session, data *domainsData) {
	data.CanCreate, data.CanVerify, data.CanDelete = s.allows("domain.create"), s.allows("domain.update"), s.allows("domain.delete")
}

// domains lists the team's sending domains with a form to add one.
func (d *Dashboard) domains(w http.ResponseWriter, r *http.Request, s *session) {
	d.domainsPage(w, r, s, http.StatusOK, domainsData{})
}

func (d *Dashboard) domainsPage(w http.ResponseWriter, r *http.Request, s *session, status int, data domainsData) {
	next, errText, done := d.listPage(w, r, s, "/domains", &data.Domains)
	if done {
		return
	}
	if data.Error == "" {
		data.Error = errText
	}
	data.NextCursor = next
	d.domainPerms(s, &data)
	d.render(w, r, status, "domains", s, page{Title: "Domains", Nav: "domains", Data: data})
}

func (d *Dashboard) createDomain(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.PostFormValue("domain"))
	var created domain
	a := d.call(r, s, http.MethodPost, "/domains", nil, map[string]any{"domain": name})
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&created); err != nil {
		d.domainsPage(w, r, s, http.StatusUnprocessableEntity, domainsData{Error: err.Error(), Value: name})
		return
	}
	d.redirect(w, r, s, "/domains/"+created.ID, "Domain added. Publish these records, then press Verify.", false)
}

// domainPage shows the records to publish and the last verification.
func (d *Dashboard) domainPage(w http.ResponseWriter, r *http.Request, s *session) {
	d.showDomain(w, r, s, "")
}

func (d *Dashboard) showDomain(w http.ResponseWriter, r *http.Request, s *session, msg string) {
	var dom domain
	a, err := d.get(r, s, "/domains/"+pathEscape(r.PathValue("id")), nil, &dom)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		d.render(w, r, a.Status, "error", s, page{Title: "Domain", Nav: "domains", Message: err.Error()})
		return
	}
	data := domainsData{Domain: &dom, Error: msg}
	d.domainPerms(s, &data)
	d.render(w, r, http.StatusOK, "domain", s, page{Title: dom.Domain, Nav: "domains", Data: data})
}

// verifyDomain runs the API's DNS check now.
func (d *Dashboard) verifyDomain(w http.ResponseWriter, r *http.Request, s *session) {
	a := d.call(r, s, http.MethodPost, "/domains/"+pathEscape(r.PathValue("id"))+"/verify", nil, map[string]any{})
	if d.signedOut(w, r, s, a) {
		return
	}
	msg := ""
	if !a.OK {
		msg = "Not verified: " + a.Error.Message
	}
	d.showDomain(w, r, s, msg)
}

func (d *Dashboard) deleteDomain(w http.ResponseWriter, r *http.Request, s *session) {
	a := d.call(r, s, http.MethodDelete, "/domains/"+pathEscape(r.PathValue("id")), nil, nil)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/domains", "Not deleted: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/domains", "Domain deleted.", false)
}
