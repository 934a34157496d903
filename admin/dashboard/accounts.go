package dashboard

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// provider is the part of the API's ProviderItem the pages show.
type provider struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Type           string  `json:"type"`
	Status         string  `json:"status"`
	StatusReason   *string `json:"status_reason"`
	IsShared       bool    `json:"is_shared"`
	IsEditable     bool    `json:"is_editable"`
	AllowedActions struct {
		Update, Delete, Activate, Deactivate, Test bool
	} `json:"allowed_actions"`
	SMTPHost        *string `json:"smtp_host"`
	SMTPPort        *int    `json:"smtp_port"`
	SMTPProtocol    *string `json:"smtp_protocol"`
	SMTPUsername    *string `json:"smtp_username"`
	HasSMTPPassword bool    `json:"has_smtp_password"`
	SESRegion       *string `json:"ses_region"`
	SESAccessKeyID  *string `json:"ses_access_key_id"`
	FromEmail       *string `json:"from_email"`
	FromName        *string `json:"from_name"`
	ReplyToEmail    *string `json:"reply_to_email"`
	ReplyToName     *string `json:"reply_to_name"`
	OAuthEmail      *string `json:"oauth_email"`
	Quotas          map[string]*struct {
		Min int `json:"min"`
		Max int `json:"max"`
	} `json:"quotas"`
	Percentage     *int    `json:"percentage"`
	GroupID        *string `json:"group_id"`
	TrackingDomain *string `json:"tracking_domain"`
	Health         struct {
		State          string     `json:"state"`
		RecentFailures int        `json:"recent_failures"`
		PulledUntil    *time.Time `json:"pulled_until"`
		Reason         string     `json:"reason"`
		QuotaUse       map[string]struct {
			Used int `json:"used"`
			Cap  int `json:"cap"`
		} `json:"quota_use"`
	} `json:"health"`
	LastTestedAt *string `json:"last_tested_at"`
	CreatedAt    string  `json:"created_at"`
}

// quotaWindows are the quota windows in display order.
var quotaWindows = []struct{ Key, Label string }{
	{"per_second", "per second"}, {"per_minute", "per minute"}, {"per_hour", "per hour"}, {"per_day", "per day"},
}

// quotaBar is one window's use for the page.
type quotaBar struct {
	Label     string
	Used, Cap int
}

// Bars are the provider's limited windows as used / cap, as the relay
// counts them (health.quota_use).
func (p provider) Bars() []quotaBar {
	var out []quotaBar
	for _, w := range quotaWindows {
		if u, ok := p.Health.QuotaUse[w.Key]; ok {
			out = append(out, quotaBar{Label: w.Label, Used: u.Used, Cap: u.Cap})
		}
	}
	return out
}

// QuotaText is the configured quota of window as the form shows it: "",
// "N" or "MIN-MAX".
func (p provider) QuotaText(window string) string {
	q := p.Quotas[window]
	if q == nil {
		return ""
	}
	if q.Min == q.Max {
		return itoa(q.Min)
	}
	return itoa(q.Min) + "-" + itoa(q.Max)
}

type limitSnap struct {
	Usage              int     `json:"usage"`
	MaxAllowed         int     `json:"max_allowed"`
	IsNearLimit        bool    `json:"is_near_limit"`
	CanRequestIncrease bool    `json:"can_request_increase"`
	PendingRequestID   *string `json:"pending_request_id"`
	ResetsAt           string  `json:"resets_at"`
	Hourly             struct {
		Limit    int    `json:"limit"`
		Usage    int    `json:"usage"`
		ResetsAt string `json:"resets_at"`
	} `json:"hourly"`
}

type group struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description *string  `json:"description"`
	ProviderIDs []string `json:"provider_ids"`
}

type accountsData struct {
	Providers []provider
	Managed   *provider
	Limits    struct {
		Accounts limitSnap `json:"sending_accounts"`
		Managed  limitSnap `json:"shared_amazon_ses"`
	}
	LimitsErr  string
	Groups     map[string]string // id → name
	NextCursor string
	Error      string
	CanCreate  bool
	CanUpdate  bool
	CanDelete  bool
	Deliv      *delivReport // the team's bounce and complaint rates
}

// accounts is the Sending accounts page.
func (d *Dashboard) accounts(w http.ResponseWriter, r *http.Request, s *session) {
	var data accountsData
	q := url.Values{"limit": {"50"}}
	if c := r.URL.Query().Get("cursor"); c != "" {
		q.Set("cursor", c)
	}
	var ps []provider
	a, err := d.get(r, s, "/providers", q, &ps)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err != nil {
		data.Error = err.Error()
	}
	if a.Pagination.HasMore {
		data.NextCursor = a.Pagination.NextCursor
	}
	for i := range ps {
		if ps[i].IsShared {
			data.Managed = &ps[i]
		} else {
			data.Providers = append(data.Providers, ps[i])
		}
	}
	if _, err := d.get(r, s, "/providers/limits", nil, &data.Limits); err != nil {
		data.LimitsErr = err.Error()
	}
	data.Groups = d.groupNames(r, s)
	data.CanCreate, data.CanUpdate, data.CanDelete = s.allows("provider.create"), s.allows("provider.update"), s.allows("provider.delete")
	data.Deliv = d.deliverability(r, s, "")
	d.render(w, r, http.StatusOK, "accounts", s, page{Title: "Sending accounts", Nav: "accounts", Data: data})
}

// groupNames maps the team's delivery groups' IDs to names; empty when
// the key may not read groups (the page then shows IDs).
func (d *Dashboard) groupNames(r *http.Request, s *session) map[string]string {
	_, names := d.groupsAndNames(r, s)
	return names
}

func (d *Dashboard) listGroups(r *http.Request, s *session) []group {
	var gs []group
	if _, err := d.get(r, s, "/delivery-groups", url.Values{"limit": {"100"}}, &gs); err != nil {
		return nil
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].Name < gs[j].Name })
	return gs
}

// requestIncrease files the sending-accounts limit request.
func (d *Dashboard) requestIncrease(w http.ResponseWriter, r *http.Request, s *session) {
	body := map[string]any{}
	if reason := r.PostFormValue("reason"); reason != "" {
		body["reason"] = reason
	}
	a := d.call(r, s, http.MethodPost, "/providers/limits/sending-accounts/request-increase", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/accounts", "Request not filed: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/accounts", "Increase requested. The operator will review it.", false)
}

// managedIncrease files the managed account's daily-limit review.
func (d *Dashboard) managedIncrease(w http.ResponseWriter, r *http.Request, s *session) {
	a := d.call(r, s, http.MethodPost, "/providers/shared-amazon-ses-limit-request", nil, map[string]any{})
	if d.signedOut(w, r, s, a) {
		return
	}
	if !a.OK {
		d.redirect(w, r, s, "/accounts", "Request not filed: "+a.Error.Message, true)
		return
	}
	d.redirect(w, r, s, "/accounts", "Review requested for the managed account's daily limit.", false)
}

// oauthStart begins the Gmail or Microsoft connect flow and links to the
// authorisation URL the API made (from the operator's OAuth settings,
// never from the request). A link, not a redirect: the CSP's
// form-action 'self' stops a form post redirected to another site.
func (d *Dashboard) oauthStart(w http.ResponseWriter, r *http.Request, s *session) {
	kind := r.PostFormValue("kind")
	body := map[string]any{}
	if n := r.PostFormValue("name"); n != "" {
		body["name"] = n
	}
	var out struct {
		URL string `json:"authorization_url"`
	}
	a := d.call(r, s, http.MethodPost, "/providers/oauth/"+pathEscape(kind)+"/start", nil, body)
	if d.signedOut(w, r, s, a) {
		return
	}
	if err := a.into(&out); err != nil {
		d.redirect(w, r, s, "/accounts/new", "Could not start the sign-in: "+err.Error(), true)
		return
	}
	u, err := url.Parse(out.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		d.redirect(w, r, s, "/accounts/new", "The connect flow is not configured.", true)
		return
	}
	d.render(w, r, http.StatusOK, "error", s, page{Title: "Connect your account", Nav: "accounts",
		Message: "Continue to the provider's sign-in page; it brings you back here when you are done.", Link: u.String()})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
