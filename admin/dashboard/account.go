package dashboard

import (
	"net/http"
	"strconv"
	"strings"
)

// accountForm is the provider form's state: the values typed (so a
// refused form comes back filled in, passwords excepted) and the API's
// complaints per field.
type accountForm struct {
	Type      string
	Provider  *provider // nil on the new-account form
	Values    map[string]string
	Errors    map[string]string
	Error     string
	Groups    []group
	Test      *testResult
	Windows   []struct{ Key, Label string }
	CanEdit   bool
	CanUpdate bool
	CanTest   bool
	CanDel    bool
	Deliv     *delivReport // this account's bounce and complaint rates
	HasOAuth  bool
}

type testResult struct {
	Success   bool   `json:"success"`
	Deferred  bool   `json:"deferred"`
	Message   string `json:"message"`
	LatencyMS int64  `json:"latency_ms"`
	TestedAt  string `json:"tested_at"`
}

// formFields are the inputs the provider forms have, by API field name.
var (
	textFields   = []string{"name", "smtp_host", "smtp_protocol", "smtp_username", "ses_region", "ses_access_key_id", "ses_endpoint"}
	senderFields = []string{"from_email", "from_name", "reply_to_email", "reply_to_name", "tracking_domain"}
	secretFields = []string{"smtp_password", "ses_secret_access_key"}
)

// providerBody turns the posted form into the API's JSON body. It checks
// nothing: a value that is not a number where one is expected is sent as
// the string it is and the API's answer says what is wrong. On an update
// (patch) a blank optional field clears it (null); a blank password or
// secret is left out, which keeps the stored one.
func providerBody(r *http.Request, typ string, patch bool) map[string]any {
	f := r.PostForm
	b := map[string]any{}
	if !patch {
		b["type"] = typ
	}
	for _, k := range textFields {
		if _, ok := f[k]; ok {
			if v := strings.TrimSpace(f.Get(k)); v != "" || patch {
				b[k] = v
			}
		}
	}
	for _, k := range secretFields {
		if v := f.Get(k); v != "" {
			b[k] = v
		}
	}
	if _, ok := f["smtp_port"]; ok {
		b["smtp_port"] = number(f.Get("smtp_port"))
	}
	for _, k := range senderFields {
		if v := strings.TrimSpace(f.Get(k)); v != "" {
			b[k] = v
		} else if patch {
			b[k] = nil
		}
	}
	if v := strings.TrimSpace(f.Get("percentage")); v != "" {
		b["percentage"] = number(v)
	} else if patch {
		b["percentage"] = nil
	}
	if _, ok := f["group_id"]; ok {
		if v := f.Get("group_id"); v != "" {
			b["group_id"] = v
		} else if patch {
			b["group_id"] = nil
		}
	}
	quotas := map[string]any{}
	for _, w := range quotaWindows {
		v := strings.TrimSpace(f.Get("quota_" + w.Key))
		switch {
		case v == "":
			if patch {
				quotas[w.Key] = nil
			}
		case strings.Contains(v, "-"):
			lo, hi, _ := strings.Cut(v, "-")
			quotas[w.Key] = map[string]any{"min": number(lo), "max": number(hi)}
		default:
			quotas[w.Key] = number(v)
		}
	}
	if len(quotas) > 0 {
		b["quotas"] = quotas
	}
	return b
}

// number is s as an integer when it is one, else s itself, for the API
// to refuse with its own message.
func number(s string) any {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return s
}

// formValues keeps what was typed, minus secrets.
func formValues(r *http.Request) map[string]string {
	out := map[string]string{}
	for k, v := range r.PostForm {
		if k == "csrf" || k == "smtp_password" || k == "ses_secret_access_key" || len(v) == 0 {
			continue
		}
		out[k] = v[0]
	}
	return out
}

// providerValues is a stored provider as form values.
func providerValues(p *provider) map[string]string {
	v := map[string]string{
		"name": p.Name, "smtp_host": deref(p.SMTPHost), "smtp_port": derefi(p.SMTPPort),
		"smtp_protocol": deref(p.SMTPProtocol), "smtp_username": deref(p.SMTPUsername),
		"ses_region": deref(p.SESRegion), "ses_access_key_id": deref(p.SESAccessKeyID),
		"from_email": deref(p.FromEmail), "from_name": deref(p.FromName),
		"reply_to_email": deref(p.ReplyToEmail), "reply_to_name": deref(p.ReplyToName),
		"tracking_domain": deref(p.TrackingDomain), "percentage": derefi(p.Percentage), "group_id": deref(p.GroupID),
	}
	for _, w := range quotaWindows {
		v["quota_"+w.Key] = p.QuotaText(w.Key)
	}
	return v
}

// newAccount is the type picker, or with ?type= the form for that type.
func (d *Dashboard) newAccount(w http.ResponseWriter, r *http.Request, s *session) {
	typ := r.URL.Query().Get("type")
	f := accountForm{Type: typ, Values: map[string]string{"smtp_port": "587", "smtp_protocol": "starttls"},
		Errors: map[string]string{}, Windows: quotaWindows, CanEdit: s.allows("provider.create")}
	if typ != "smtp" && typ != "ses" {
		f.Type = ""
	} else {
		f.Groups = d.listGroups(r, s)
	}
	if r.URL.Query().Get("connect") == "failed" { // back from the OAuth callback
		f.Error = "The account was not connected. Start again; if it keeps failing, ask your operator to check the OAuth settings."
	}
	d.render(w, r, http.StatusOK, "account_new", s, page{Title: "Add a sending account", Nav: "accounts", Data: f})
}

// createAccount is POST /providers with the form.
func (d *Dashboard) createAccount(w http.ResponseWriter, r *http.Request, s *session) {
	typ := r.PostFormValue("type")
	var created provider
	a := d.call(r, s, http.MethodPost, "/providers", nil, providerBody(r, typ, false))
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&created); err != nil {
		f := accountForm{Type: typ, Values: formValues(r), Errors: a.Error.fieldErrors(), Error: err.Error(),
			Windows: quotaWindows, CanEdit: true, Groups: d.listGroups(r, s)}
		if typ != "smtp" && typ != "ses" {
			f.Type = ""
		}
		d.render(w, r, http.StatusUnprocessableEntity, "account_new", s, page{Title: "Add a sending account", Nav: "accounts", Data: f})
		return
	}
	d.redirect(w, r, s, "/accounts/"+created.ID, "Account created. Test its connection below.", false)
}

// loadAccount reads one provider; false when the page was answered.
func (d *Dashboard) loadAccount(w http.ResponseWriter, r *http.Request, s *session) (*provider, bool) {
	var p provider
	a, err := d.get(r, s, "/providers/"+pathEscape(r.PathValue("id")), nil, &p)
	if d.signedOut(w, r, s, a) {
		return nil, false
	}
	if err != nil {
		d.render(w, r, a.Status, "error", s, page{Title: "Sending account", Nav: "accounts", Message: err.Error()})
		return nil, false
	}
	return &p, true
}

func (d *Dashboard) accountForm(r *http.Request, s *session, p *provider) accountForm {
	return accountForm{Type: p.Type, Provider: p, Values: providerValues(p), Errors: map[string]string{},
		Windows: quotaWindows, Groups: d.listGroups(r, s),
		CanEdit:   p.AllowedActions.Update && s.allows("provider.update"),
		CanUpdate: s.allows("provider.update"),
		CanTest:   p.AllowedActions.Test && s.allows("provider.update"),
		CanDel:    p.AllowedActions.Delete && s.allows("provider.delete"),
		HasOAuth:  p.Type == "gmail_api" || p.Type == "outlook_api"}
}

// account is one provider's page: settings, advanced settings, test.
func (d *Dashboard) account(w http.ResponseWriter, r *http.Request, s *session) {
	p, ok := d.loadAccount(w, r, s)
	if !ok {
		return
	}
	f := d.accountForm(r, s, p)
	f.Deliv = d.deliverability(r, s, p.ID)
	d.render(w, r, http.StatusOK, "account", s, page{Title: p.Name, Nav: "accounts", Data: f})
}

// updateAccount is PATCH /providers/{id} with the form.
func (d *Dashboard) updateAccount(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	p, ok := d.loadAccount(w, r, s)
	if !ok {
		return
	}
	var updated provider
	a := d.call(r, s, http.MethodPatch, "/providers/"+pathEscape(id), nil, providerBody(r, p.Type, true))
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&updated); err != nil {
		f := d.accountForm(r, s, p)
		f.Values, f.Errors, f.Error = formValues(r), a.Error.fieldErrors(), err.Error()
		d.render(w, r, http.StatusUnprocessableEntity, "account", s, page{Title: p.Name, Nav: "accounts", Data: f})
		return
	}
	d.redirect(w, r, s, "/accounts/"+updated.ID, "Settings saved.", false)
}

// testAccount runs the API's connection test and shows its verdict.
func (d *Dashboard) testAccount(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	a := d.call(r, s, http.MethodPost, "/providers/"+pathEscape(id)+"/test", nil, map[string]any{})
	if d.signedOut(w, r, s, a) {
		return
	}
	var res testResult
	testErr := a.into(&res)
	p, ok := d.loadAccount(w, r, s) // after the test: it may have moved the status
	if !ok {
		return
	}
	f := d.accountForm(r, s, p)
	if testErr != nil {
		f.Error = "Test not run: " + testErr.Error()
	} else {
		f.Test = &res
	}
	d.render(w, r, http.StatusOK, "account", s, page{Title: p.Name, Nav: "accounts", Data: f})
}

// setActive activates or deactivates a provider.
func (d *Dashboard) setActive(on bool) handler {
	verb, done := "deactivate", "Account deactivated."
	if on {
		verb, done = "activate", "Account activated."
	}
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		id := r.PathValue("id")
		a := d.call(r, s, http.MethodPost, "/providers/"+pathEscape(id)+"/"+verb, nil, map[string]any{})
		if d.signedOut(w, r, s, a) {
			return
		}
		back := "/accounts"
		if r.PostFormValue("back") == "account" && a.OK {
			back = "/accounts/" + pathEscape(id)
		}
		if !a.OK {
			d.redirect(w, r, s, back, "Could not "+verb+": "+a.Error.Message, true)
			return
		}
		d.redirect(w, r, s, back, done, false)
	}
}

// confirmDelete asks before deleting.
func (d *Dashboard) confirmDelete(w http.ResponseWriter, r *http.Request, s *session) {
	p, ok := d.loadAccount(w, r, s)
	if !ok {
		return
	}
	d.render(w, r, http.StatusOK, "confirm_delete", s, page{Title: "Delete " + p.Name, Nav: "accounts", Data: p})
}

func (d *Dashboard) deleteAccount(w http.ResponseWriter, r *http.Request, s *session) {
	a := d.call(r, s, http.MethodDelete, "/providers/"+pathEscape(r.PathValue("id")), nil, nil)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/accounts", "Not deleted: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/accounts", "Account deleted.", false)
}
