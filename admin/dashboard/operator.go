package dashboard

import (
	"net/http"
	"net/url"
)

type team struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
}

type limitRequest struct {
	ID             string  `json:"id"`
	TeamID         string  `json:"team_id"`
	Type           string  `json:"type"`
	Status         string  `json:"status"`
	Reason         *string `json:"reason"`
	RequestedLimit *int    `json:"requested_limit"`
	Usage          int     `json:"usage"`
	CurrentLimit   int     `json:"current_limit"`
	RequestedAt    string  `json:"requested_at"`
}

type operatorData struct {
	Teams    []team
	Requests []limitRequest
	Error    string
}

// operatorHome is the operator view: teams and pending limit requests.
func (d *Dashboard) operatorHome(w http.ResponseWriter, r *http.Request, s *session) {
	var data operatorData
	a, err := d.get(r, s, "/operator/teams", url.Values{"limit": {"100"}}, &data.Teams)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		data.Error = err.Error()
	}
	if _, err := d.get(r, s, "/operator/limit-requests", url.Values{"status": {"pending"}, "limit": {"100"}}, &data.Requests); err != nil && data.Error == "" {
		data.Error = err.Error()
	}
	d.render(w, r, http.StatusOK, "operator", s, page{Title: "Operator", Nav: "operator", Data: data})
}

// decideLimitRequest approves (with the limit typed) or denies a request.
func (d *Dashboard) decideLimitRequest(w http.ResponseWriter, r *http.Request, s *session) {
	decision := r.PathValue("decision")
	if decision != "approve" && decision != "deny" {
		http.NotFound(w, r)
		return
	}
	body := map[string]any{}
	if decision == "approve" {
		// The API names the new limit after the request's kind.
		name := "daily_limit"
		if r.PostFormValue("type") == "sending_accounts" {
			name = "provider_limit"
		}
		if v := r.PostFormValue("limit"); v != "" {
			body[name] = number(v)
		}
	} else if v := r.PostFormValue("reason"); v != "" {
		body["reason"] = v
	}
	a := d.call(r, s, http.MethodPost, "/operator/limit-requests/"+pathEscape(r.PathValue("id"))+"/"+decision, nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/operator", "Not recorded: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/operator", "Decision recorded.", false)
}
