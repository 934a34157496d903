package dashboard

import (
	"net/http"
	"net/url"
	"strings"
)

type groupsData struct {
	Groups    []group
	Names     map[string]string
	Error     string
	Values    map[string]string
	CanCreate bool
	CanDelete bool
}

// groups lists delivery groups with a form to add one.
func (d *Dashboard) groups(w http.ResponseWriter, r *http.Request, s *session) {
	d.groupsPage(w, r, s, http.StatusOK, "", nil)
}

func (d *Dashboard) groupsPage(w http.ResponseWriter, r *http.Request, s *session, status int, formErr string, values map[string]string) {
	data := groupsData{Error: formErr, Values: values, CanCreate: s.allows("group.create"), CanDelete: s.allows("group.delete")}
	var gs []group
	a, err := d.get(r, s, "/delivery-groups", url.Values{"limit": {"100"}}, &gs)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	data.Groups = gs
	_, data.Names = d.providerNames(r, s)
	d.render(w, r, status, "groups", s, page{Title: "Delivery groups", Nav: "groups", Data: data})
}

func (d *Dashboard) createGroup(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]any{"name": strings.TrimSpace(r.PostFormValue("name"))}
	if v := strings.TrimSpace(r.PostFormValue("description")); v != "" {
		body["description"] = v
	}
	a := d.call(r, s, http.MethodPost, "/delivery-groups", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.groupsPage(w, r, s, http.StatusUnprocessableEntity, a.Error.Message, formValues(r))
		return
	}
	d.redirect(w, r, s, "/groups", "Group created.", false)
}

type groupDeleteData struct {
	Group     group
	Keys      []string
	Mailboxes []string
	Names     map[string]string
	// Unchecked says what could not be read (no permission, an API
	// error, more than maxListPages pages): the warning is then partial
	// and the page says so rather than "nothing depends on it".
	Unchecked []string
}

// confirmDeleteGroup warns with the keys and mailboxes whose send scope
// names the group: the API lists them (scopeReferences) only when it
// deletes, so the page reads the keys and mailboxes and looks.
func (d *Dashboard) confirmDeleteGroup(w http.ResponseWriter, r *http.Request, s *session) {
	var g group
	a, err := d.get(r, s, "/delivery-groups/"+pathEscape(r.PathValue("id")), nil, &g)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		d.render(w, r, a.Status, "error", s, page{Title: "Delivery group", Nav: "groups", Message: err.Error()})
		return
	}
	data := groupDeleteData{Group: g}
	_, data.Names = d.providerNames(r, s)
	type scoped struct {
		ID, Name  string
		Address   string `json:"address"`
		SendScope struct {
			Type     string   `json:"type"`
			GroupIDs []string `json:"group_public_ids"`
		} `json:"send_scope"`
	}
	keys, err := listAll[scoped](d, r, s, "/api-keys")
	if err != nil {
		data.Unchecked = append(data.Unchecked, "API keys: "+err.Error())
	}
	boxes, err := listAll[scoped](d, r, s, "/mailboxes")
	if err != nil {
		data.Unchecked = append(data.Unchecked, "mailboxes: "+err.Error())
	}
	for _, k := range keys {
		if k.SendScope.Type == "group" && containsString(k.SendScope.GroupIDs, g.ID) {
			data.Keys = append(data.Keys, k.Name+" ("+k.ID+")")
		}
	}
	for _, m := range boxes {
		if m.SendScope.Type == "group" && containsString(m.SendScope.GroupIDs, g.ID) {
			data.Mailboxes = append(data.Mailboxes, m.Address+" ("+m.ID+")")
		}
	}
	d.render(w, r, http.StatusOK, "group_delete", s, page{Title: "Delete " + g.Name, Nav: "groups", Data: data})
}

func (d *Dashboard) deleteGroup(w http.ResponseWriter, r *http.Request, s *session) {
	a := d.call(r, s, http.MethodDelete, "/delivery-groups/"+pathEscape(r.PathValue("id")), nil, nil)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/groups", "Not deleted: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/groups", "Group deleted. Its providers now belong to no group.", false)
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
