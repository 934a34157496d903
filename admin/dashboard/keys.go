package dashboard

import (
	"net/http"
	"strings"
)

type apiKey struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Prefix      string   `json:"prefix"`
	Permissions []string `json:"permissions"`
	SendScope   *struct {
		Type        string   `json:"type"`
		ProviderIDs []string `json:"provider_public_ids"`
		GroupIDs    []string `json:"group_public_ids"`
	} `json:"send_scope"`
	Status     string  `json:"status"`
	CreatedAt  string  `json:"created_at"`
	LastUsedAt *string `json:"last_used_at"`
	Key        string  `json:"key"` // only in the create answer
}

type keysData struct {
	Keys       []apiKey
	Groups     []group
	Names      map[string]string
	Created    *apiKey // the key just made: its secret is on this GET only (reveal.go)
	Error      string
	Values     map[string]string
	NextCursor string
	CanCreate  bool
	CanDelete  bool
}

// keys lists API keys with a form to make one.
func (d *Dashboard) keys(w http.ResponseWriter, r *http.Request, s *session) {
	created, _ := revealed(r, "/keys").(*apiKey)
	d.keysPage(w, r, s, http.StatusOK, keysData{Created: created})
}

func (d *Dashboard) keysPage(w http.ResponseWriter, r *http.Request, s *session, status int, data keysData) {
	next, errText, done := d.listPage(w, r, s, "/api-keys", &data.Keys)
	if done {
		return
	}
	if data.Error == "" {
		data.Error = errText
	}
	data.NextCursor = next
	data.Groups, data.Names = d.groupsAndNames(r, s)
	data.CanCreate, data.CanDelete = s.allows("key.create"), s.allows("key.delete")
	if data.Values == nil {
		data.Values = map[string]string{"type": "sending"}
	}
	d.render(w, r, status, "keys", s, page{Title: "API keys", Nav: "keys", Data: data})
}

// createKey makes a key; its secret is shown once, on the GET the answer
// redirects to (reveal.go).
func (d *Dashboard) createKey(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	body := map[string]any{"name": strings.TrimSpace(f.Get("name")), "type": f.Get("type")}
	if f.Get("type") == "root" {
		var perms []string
		for p := range strings.FieldsFuncSeq(f.Get("permissions"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
			perms = append(perms, p)
		}
		if len(perms) > 0 {
			body["permissions"] = perms
		}
	} else if g := f.Get("group_id"); g != "" {
		body["send_scope"] = map[string]any{"type": "group", "group_public_ids": []string{g}}
	}
	var created apiKey
	a := d.call(r, s, http.MethodPost, "/api-keys", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&created); err != nil {
		d.keysPage(w, r, s, http.StatusUnprocessableEntity, keysData{Error: err.Error(), Values: formValues(r)})
		return
	}
	d.revealRedirect(w, r, s, "/keys", &created)
}

// revokeKey revokes a key at once.
func (d *Dashboard) revokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	a := d.call(r, s, http.MethodDelete, "/api-keys/"+pathEscape(r.PathValue("id")), nil, nil)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/keys", "Not revoked: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/keys", "Key revoked. It stops working at once.", false)
}
