package dashboard

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

type logLine struct {
	ID         string   `json:"id"`
	Status     string   `json:"status"`
	Reason     *string  `json:"reason"`
	From       string   `json:"from"`
	To         []string `json:"to"`
	Subject    *string  `json:"subject"`
	ProviderID *string  `json:"provider_id"`
	Attempts   int      `json:"attempts"`
	CreatedAt  string   `json:"created_at"`
}

type logsData struct {
	Lines      []logLine
	Filter     map[string]string
	Providers  []provider
	Names      map[string]string
	NextCursor string
	NextURL    string // the next page, whole: html/template would escape a bare query's = and &
	Error      string
	Filtered   bool
}

// logFilters are the message-log filters the page passes through to
// GET /emails/logs, which checks them.
var logFilters = []string{"status", "provider_id", "search", "from_date", "to_date"}

// logs is the message log with filters, a page at a time.
func (d *Dashboard) logs(w http.ResponseWriter, r *http.Request, s *session) {
	in := r.URL.Query()
	q := url.Values{"limit": {"50"}}
	data := logsData{Filter: map[string]string{}, Names: map[string]string{}}
	for _, k := range logFilters {
		if v := strings.TrimSpace(in.Get(k)); v != "" {
			q.Set(k, v)
			data.Filter[k] = v
			data.Filtered = true
		}
	}
	if c := in.Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	a, err := d.get(r, s, "/emails/logs", q, &data.Lines)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		data.Error = err.Error()
	}
	if a.Pagination.HasMore {
		next := url.Values{}
		for k, v := range data.Filter {
			next.Set(k, v)
		}
		next.Set("cursor", a.Pagination.NextCursor)
		data.NextURL = "/logs?" + next.Encode()
	}
	data.Providers, data.Names = d.providerNames(r, s)
	d.render(w, r, http.StatusOK, "logs", s, page{Title: "Logs", Nav: "logs", Data: data})
}

// providerNames lists the team's providers (the first page, for the
// filter) and maps IDs to names; empty when the key may not read them.
func (d *Dashboard) providerNames(r *http.Request, s *session) ([]provider, map[string]string) {
	var ps []provider
	names := map[string]string{}
	if _, err := d.get(r, s, "/providers", url.Values{"limit": {"100"}}, &ps); err != nil {
		return nil, names
	}
	for _, p := range ps {
		names[p.ID] = p.Name
	}
	return ps, names
}

type attempt struct {
	Number       int             `json:"number"`
	ProviderID   *string         `json:"provider_id"`
	ProviderType *string         `json:"provider_type"`
	StartedAt    string          `json:"started_at"`
	DurationMS   int64           `json:"duration_ms"`
	Status       string          `json:"status"`
	Class        *string         `json:"class"`
	Code         *int            `json:"code"`
	Reply        *string         `json:"reply"`
	UpstreamID   *string         `json:"upstream_id"`
	Routing      json.RawMessage `json:"routing"`
	Explanation  *explanation    `json:"-"`
}

// explanation is the routing record of one pick (routing.Explanation).
type explanation struct {
	ScopeType string   `json:"scope_type"`
	InScope   []string `json:"in_scope"`
	Excluded  []struct {
		ProviderID string `json:"provider_id"`
		Reason     string `json:"reason"`
	} `json:"excluded"`
	Eligible []struct {
		ProviderID string `json:"provider_id"`
		Weight     int    `json:"weight"`
	} `json:"eligible"`
	Draw    int    `json:"draw"`
	Total   int    `json:"total_weight"`
	Picked  string `json:"picked"`
	Waiting bool   `json:"waiting"`
	RetryAt string `json:"retry_at"`
}

type message struct {
	ID            string          `json:"id"`
	Status        string          `json:"status"`
	Reason        *string         `json:"reason"`
	Waiting       json.RawMessage `json:"waiting"`
	Source        string          `json:"source"`
	From          string          `json:"from"`
	Subject       *string         `json:"subject"`
	Size          int64           `json:"size"`
	SentFromEmail *string         `json:"sent_from_email"`
	NextAttemptAt *string         `json:"next_attempt_at"`
	Recipients    []struct {
		Email      string     `json:"email"`
		Status     string     `json:"status"`
		Code       *int       `json:"code"`
		Reply      *string    `json:"reply"`
		ProviderID *string    `json:"provider_id"`
		Feedback   []feedback `json:"feedback"`
	} `json:"recipients"`
	Attempts  []attempt `json:"attempts"`
	CreatedAt string    `json:"created_at"`
	WaitingX  *explanation
}

// reasonText says what a routing exclusion reason means.
var reasonText = map[string]string{
	"out_of_scope":                "not in the credential's send scope",
	"inactive":                    "deactivated",
	"status_error":                "in error",
	"status_pending":              "waiting for authorisation",
	"pulled_by_breaker":           "pulled by the circuit breaker",
	"over_quota":                  "over quota",
	"zero_weight":                 "percentage 0",
	"auth_failed_for_message":     "failed authentication for this message",
	"failed_for_message_recently": "failed for this message recently",
}

type messageData struct {
	M     message
	Names map[string]string
	Why   map[string]string
}

// message is one message: recipients, every attempt with its reply and
// its routing explanation drawn.
func (d *Dashboard) message(w http.ResponseWriter, r *http.Request, s *session) {
	var m message
	a, err := d.get(r, s, "/emails/"+pathEscape(r.PathValue("id")), nil, &m)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		d.render(w, r, a.Status, "error", s, page{Title: "Message", Nav: "logs", Message: err.Error()})
		return
	}
	for i := range m.Attempts {
		var x explanation
		if len(m.Attempts[i].Routing) > 0 && json.Unmarshal(m.Attempts[i].Routing, &x) == nil {
			m.Attempts[i].Explanation = &x
		}
	}
	if len(m.Waiting) > 0 && string(m.Waiting) != "null" {
		var x explanation
		if json.Unmarshal(m.Waiting, &x) == nil {
			m.WaitingX = &x
		}
	}
	_, names := d.providerNames(r, s)
	d.render(w, r, http.StatusOK, "message", s, page{Title: "Message " + m.ID, Nav: "logs",
		Data: messageData{M: m, Names: names, Why: reasonText}})
}
