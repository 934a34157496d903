package dashboard

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/smtpmux/smtpmux/admin/webhook"
)

type hook struct {
	ID           string   `json:"id"`
	Name         *string  `json:"name"`
	URL          string   `json:"url"`
	EventTypes   []string `json:"event_types"`
	Enabled      bool     `json:"enabled"`
	Failing      bool     `json:"failing"`
	SecretPrefix string   `json:"secret_prefix"`
	Secret       string   `json:"secret"` // only in the create and rotate answers
}

type delivery struct {
	ID          string  `json:"id"`
	EventType   string  `json:"event_type"`
	Status      string  `json:"status"`
	Attempts    int     `json:"attempts"`
	LastStatus  *int    `json:"last_status_code"`
	LastError   *string `json:"last_error"`
	CreatedAt   string  `json:"created_at"`
	CompletedAt *string `json:"completed_at"`
}

type hooksData struct {
	Hooks      []hook
	Hook       *hook
	Deliveries []delivery
	Secret     string // a secret just made: shown on this GET only (reveal.go)
	Types      []string
	Checked    map[string]bool
	Values     map[string]string
	Error      string
	Notice     string
	CanCreate  bool
	CanUpdate  bool
	CanDelete  bool
}

func (d *Dashboard) hookPerms(s *session, data *hooksData) {
	data.CanCreate, data.CanUpdate, data.CanDelete = s.allows("webhook.create"), s.allows("webhook.update"), s.allows("webhook.delete")
	data.Types = webhook.EventTypes
}

func (d *Dashboard) webhooks(w http.ResponseWriter, r *http.Request, s *session) {
	d.webhooksPage(w, r, s, http.StatusOK, hooksData{})
}

func (d *Dashboard) webhooksPage(w http.ResponseWriter, r *http.Request, s *session, status int, data hooksData) {
	a, err := d.get(r, s, "/webhooks", url.Values{"limit": {"100"}}, &data.Hooks)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	d.hookPerms(s, &data)
	if data.Values == nil {
		data.Values = map[string]string{}
	}
	d.render(w, r, status, "webhooks", s, page{Title: "Webhooks", Nav: "webhooks", Data: data})
}

func (d *Dashboard) createWebhook(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]any{"url": strings.TrimSpace(f.Get("url")), "event_types": f["event_types"]}
	if f["event_types"] == nil {
		body["event_types"] = []string{}
	}
	if n := strings.TrimSpace(f.Get("name")); n != "" {
		body["name"] = n
	}
	var created hook
	a := d.call(r, s, http.MethodPost, "/webhooks", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&created); err != nil {
		checked := map[string]bool{}
		for _, t := range f["event_types"] {
			checked[t] = true
		}
		d.webhooksPage(w, r, s, http.StatusUnprocessableEntity, hooksData{Error: err.Error(), Values: formValues(r), Checked: checked})
		return
	}
	d.revealRedirect(w, r, s, "/webhooks/"+pathEscape(created.ID), &created)
}

func (d *Dashboard) webhookPage(w http.ResponseWriter, r *http.Request, s *session) {
	var data hooksData
	if h, _ := revealed(r, "/webhooks/"+pathEscape(r.PathValue("id"))).(*hook); h != nil {
		data.Secret = h.Secret
	}
	d.showWebhook(w, r, s, r.PathValue("id"), http.StatusOK, data)
}

// showWebhook is one webhook with its recent deliveries.
func (d *Dashboard) showWebhook(w http.ResponseWriter, r *http.Request, s *session, id string, status int, data hooksData) {
	id = pathEscape(id)
	var h hook
	a, err := d.get(r, s, "/webhooks/"+id, nil, &h)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		d.render(w, r, a.Status, "error", s, page{Title: "Webhook", Nav: "webhooks", Message: err.Error()})
		return
	}
	data.Hook = &h
	if _, err := d.get(r, s, "/webhooks/"+id+"/deliveries", url.Values{"limit": {"20"}}, &data.Deliveries); err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	d.hookPerms(s, &data)
	d.render(w, r, status, "webhook", s, page{Title: "Webhook", Nav: "webhooks", Data: data})
}

// webhookAction runs rotate-secret, test, enable, disable or delete.
func (d *Dashboard) webhookAction(w http.ResponseWriter, r *http.Request, s *session) {
	id := pathEscape(r.PathValue("id"))
	switch r.PathValue("action") {
	case "rotate-secret":
		var h hook
		a := d.call(r, s, http.MethodPost, "/webhooks/"+id+"/rotate-secret", nil, map[string]any{})
		if d.signedOut(w, r, s, a) {
			return
		}
		if err := a.into(&h); err != nil {
			d.showWebhook(w, r, s, id, a.Status, hooksData{Error: err.Error()})
			return
		}
		d.revealRedirect(w, r, s, "/webhooks/"+id, &h)
	case "test":
		d.hookCall(w, r, s, http.MethodPost, "/webhooks/"+id+"/test", map[string]any{}, "/webhooks/"+id, "Test event queued; its delivery appears below.")
	case "enable", "disable":
		d.hookCall(w, r, s, http.MethodPatch, "/webhooks/"+id, map[string]any{"enabled": r.PathValue("action") == "enable"}, "/webhooks/"+id, "Saved.")
	case "delete":
		d.hookCall(w, r, s, http.MethodDelete, "/webhooks/"+id, nil, "/webhooks", "Webhook deleted.")
	default:
		http.NotFound(w, r)
	}
}

func (d *Dashboard) hookCall(w http.ResponseWriter, r *http.Request, s *session, method, path string, body any, back, done string) {
	a := d.call(r, s, method, path, nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, back, "Not done: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, back, done, false)
}
