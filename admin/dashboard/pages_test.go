package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

func TestPagesRender(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	if p := b.signIn(e.root); p.Code != http.StatusSeeOther {
		t.Fatalf("sign in: %d %s", p.Code, p.Body)
	}
	for _, path := range []string{"/accounts", "/accounts/new", "/accounts/new?type=smtp", "/accounts/new?type=ses", "/logs", "/overview", "/groups"} {
		if p := b.get(path); p.Code != 200 {
			t.Fatalf("%s: %d %s", path, p.Code, p.Body)
		}
	}
}

// TestAccountForms: create through the form (a refused form comes back
// with the API's field errors and without the password), edit quotas,
// password kept when left blank.
func TestAccountForms(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.root)
	form := url.Values{"type": {"smtp"}, "name": {"relay"}, "smtp_host": {"127.0.0.1"}, "smtp_port": {"99999"},
		"smtp_protocol": {"none"}, "smtp_username": {"u"}, "smtp_password": {"hunter2-secret"}}
	p := b.post("/accounts/new?type=smtp", "/accounts/new", form)
	if p.Code != http.StatusUnprocessableEntity || !strings.Contains(p.Body, "smtp_port") || strings.Contains(p.Body, "hunter2-secret") {
		t.Fatalf("bad port: %d %s", p.Code, p.Body)
	}
	form.Set("smtp_port", "2525")
	p = b.post("/accounts/new?type=smtp", "/accounts/new", form)
	if p.Code != http.StatusSeeOther {
		t.Fatalf("create: %d %s", p.Code, p.Body)
	}
	loc := p.Header.Get("Location")
	id := strings.TrimPrefix(loc, "/accounts/")
	if body := b.get(loc).Body; !strings.Contains(body, `action="`+loc+`/deactivate"`) || !strings.Contains(body, "Test connection") {
		t.Fatal("the account page lacks Deactivate or Test connection")
	}
	edit := url.Values{"name": {"relay"}, "smtp_host": {"127.0.0.1"}, "smtp_port": {"2525"}, "smtp_protocol": {"none"},
		"smtp_username": {"u"}, "smtp_password": {""}, "quota_per_minute": {"5"}, "quota_per_hour": {"10-20"}, "percentage": {"40"}}
	if p := b.post(loc, loc, edit); p.Code != http.StatusSeeOther {
		t.Fatalf("edit: %d %s", p.Code, p.Body)
	}
	pr, err := e.st.Provider(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.SMTPPasswordSealed) == 0 || pr.Quotas.PerMinute == nil || pr.Quotas.PerMinute.Max != 5 ||
		pr.Quotas.PerHour == nil || pr.Quotas.PerHour.Min != 10 || pr.Quotas.PerHour.Max != 20 || pr.Percentage == nil || *pr.Percentage != 40 {
		t.Fatalf("stored: %+v", pr)
	}
	edit.Set("quota_per_minute", "")
	edit.Set("quota_per_day", "lots")
	p = b.post(loc, loc, edit)
	if p.Code != http.StatusUnprocessableEntity || !strings.Contains(p.Body, "field-error") {
		t.Fatalf("bad quota: %d %s", p.Code, p.Body)
	}
	if p := b.post(loc, loc+"/deactivate", url.Values{"back": {"account"}}); p.Code != http.StatusSeeOther {
		t.Fatalf("deactivate: %d", p.Code)
	}
	if pr, _ := e.st.Provider(id); pr.Status != "inactive" {
		t.Fatalf("status %s", pr.Status)
	}
	if !strings.Contains(b.get(loc).Body, "Account deactivated.") {
		t.Fatal("no notice after deactivate")
	}
	if p := b.post(loc+"/delete", loc+"/delete", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.Code)
	}
	if _, err := e.st.Provider(id); err == nil {
		t.Fatal("not deleted")
	}
}

// TestOperatorView: the operator token opens the operator view, and a
// team page is not the operator's.
func TestOperatorView(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	if p := b.signIn(testOperator); p.Code != http.StatusSeeOther {
		t.Fatalf("operator sign-in: %d %s", p.Code, p.Body)
	}
	if p := b.get("/operator"); p.Code != 200 || !strings.Contains(p.Body, "default") {
		t.Fatalf("operator: %d %s", p.Code, p.Body)
	}
	if p := b.get("/accounts"); p.Code != http.StatusNotFound {
		t.Fatalf("team page for the operator: %d", p.Code)
	}
	tb := e.browser()
	tb.signIn(e.root)
	if p := tb.get("/operator"); p.Code != http.StatusNotFound {
		t.Fatalf("operator page for a team: %d", p.Code)
	}
}

// TestGroupDeleteWarning: deleting a group lists the keys whose scope
// names it.
func TestGroupDeleteWarning(t *testing.T) {
	e := newEnv(t)
	_, body := e.apiDo("POST", "/api/v1/delivery-groups", e.root, `{"name":"eu"}`)
	gid := extract(t, body, `"id":"(dgrp_[^"]+|[a-z]+_[A-Za-z0-9]+)"`)
	if code, body := e.apiDo("POST", "/api/v1/api-keys", e.root, `{"name":"eu-sender","type":"sending","send_scope":{"type":"group","group_public_ids":["`+gid+`"]}}`); code != 201 {
		t.Fatalf("key: %d %s", code, body)
	}
	b := e.browser()
	b.signIn(e.root)
	p := b.get("/groups/" + gid + "/delete")
	if !strings.Contains(p.Body, "eu-sender") || !strings.Contains(p.Body, "group-warning") {
		t.Fatalf("no warning: %s", p.Body)
	}
}

// TestKeys: a new key's secret is shown once, on the page the form
// redirects to, and never again; revoking it stops it at once.
func TestKeys(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.root)
	p := b.post("/keys", "/keys", url.Values{"name": {"app <b>"}, "type": {"sending"}})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("create: %d %s", p.Code, p.Body)
	}
	p = b.follow(p)
	secret := extract(t, p.Body, `id="new-key" readonly value="(smx_mbx_[^"]+)"`)
	if strings.Contains(p.Body, "app <b>") {
		t.Fatal("key name not escaped")
	}
	list := b.get("/keys")
	if strings.Contains(list.Body, secret) || !strings.Contains(list.Body, "app &lt;b&gt;") {
		t.Fatal("the list shows the secret, or not the key")
	}
	k, err := e.st.KeyBySecret(secret)
	if err != nil || !k.Active() {
		t.Fatalf("key: %v %v", k, err)
	}
	if p := b.post("/keys", "/keys/"+k.ID+"/revoke", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", p.Code, p.Body)
	}
	if k, _ := e.st.KeyBySecret(secret); k.Active() {
		t.Fatal("not revoked")
	}
	// A root key limited to provider.read cannot make keys here either.
	limited := e.browser()
	limited.signIn(e.addKey(e.team.ID, store.KeyRoot, "provider.read", "key.read"))
	if p := limited.post("/keys", "/keys", url.Values{"name": {"x"}, "type": {"root"}}); !strings.Contains(p.Body, "key.create") {
		t.Fatalf("limited key created a key: %d", p.Code)
	}
}

// TestDomains: adding a domain shows the records to publish; Verify runs
// the API's check (which fails here: nothing is published).
func TestDomains(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.root)
	p := b.post("/domains", "/domains", url.Values{"domain": {"mail.example.com"}})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("add: %d %s", p.Code, p.Body)
	}
	loc := p.Header.Get("Location")
	page := b.get(loc)
	if page.Code != 200 || !strings.Contains(page.Body, "_domainkey.mail.example.com") || !strings.Contains(page.Body, "v=DKIM1") {
		t.Fatalf("domain page: %d %s", page.Code, page.Body)
	}
	if p := b.post("/domains", "/domains", url.Values{"domain": {"not a domain"}}); p.Code != http.StatusUnprocessableEntity {
		t.Fatalf("bad domain: %d", p.Code)
	}
	if p := b.post(loc, loc+"/delete", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.Code)
	}
}

// TestRequestIncreaseAndApprove: at 80 % of the account limit the page
// offers Request increase; the request reaches the operator view, whose
// Approve raises the limit.
func TestRequestIncreaseAndApprove(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) { o.Providers.Limit = 5 })
	b := e.browser()
	b.signIn(e.root)
	for i := 0; i < 4; i++ {
		if i == 3 && strings.Contains(b.get("/accounts").Body, "Request increase") {
			t.Fatal("Request increase offered below 80 %")
		}
		if code, body := e.apiDo("POST", "/api/v1/providers", e.root, strings.Replace(smtpJSON, "%q", jsonQuote(fmt.Sprint("p", i)), 1)); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	page := b.get("/accounts")
	if !strings.Contains(page.Body, `action="/accounts/request-increase"`) || !strings.Contains(page.Body, "4 / 5") {
		t.Fatalf("no Request increase at 4 / 5: %s", page.Body)
	}
	if p := b.post("/accounts", "/accounts/request-increase", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("request: %d %s", p.Code, p.Body)
	}
	if page := b.get("/accounts"); !strings.Contains(page.Body, "Increase requested") || strings.Contains(page.Body, `action="/accounts/request-increase"`) {
		t.Fatal("the pending request is not shown")
	}
	op := e.browser()
	op.signIn(testOperator)
	opPage := op.get("/operator")
	id := extract(t, opPage.Body, `action="/operator/limit-requests/([^/"]+)/approve"`)
	if p := op.post("/operator", "/operator/limit-requests/"+id+"/approve", url.Values{"type": {"sending_accounts"}, "limit": {"10"}}); p.Code != http.StatusSeeOther {
		t.Fatalf("approve: %d %s", p.Code, p.Body)
	}
	if !strings.Contains(op.get("/operator").Body, "Decision recorded.") {
		t.Fatal("no notice after approving")
	}
	if page := b.get("/accounts"); !strings.Contains(page.Body, "4 / 10") {
		t.Fatal("the limit did not move to 10")
	}
}

// TestOverview: sent and failed mail shows in the 24 h and 7 d charts and
// in the per-account bars.
func TestOverview(t *testing.T) {
	e := newEnv(t)
	ps, _ := e.st.Providers(e.team.ID)
	managed := ps[0].ID
	now := time.Now().UTC()
	var ms []*store.Message
	for i := 0; i < 3; i++ {
		at := now.Add(-time.Duration(i+1) * time.Hour)
		st := state.MessageSent
		if i == 2 {
			st = state.MessageFailed
		}
		ms = append(ms, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID, Source: "smtp",
			From: "a@example.com", Recipients: []store.Recipient{{Address: "b@example.net", Status: st, ProviderID: managed}},
			Status: st, Attempts: []store.Attempt{{N: 1, ProviderID: managed, StartedAt: at, Status: state.Attempt(st)}},
			CreatedAt: at, UpdatedAt: at})
	}
	if err := e.st.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.root)
	p := b.get("/overview")
	for _, want := range []string{"Last 24 hours", "Last 7 days", "sent 2", "failed 1", "Managed Amazon SES", `aria-label="2 sent, 0 pending, 1 failed"`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(p.Body)
	}
}

// TestMailboxes: create a mailbox, make a password (shown once), suspend
// and resume it, revoke the password; the group delete warning names a
// mailbox that sends only through the group.
func TestMailboxes(t *testing.T) {
	e := newEnv(t)
	_, body := e.apiDo("POST", "/api/v1/delivery-groups", e.root, `{"name":"eu"}`)
	gid := extract(t, body, `"id":"([^"]+)"`)
	b := e.browser()
	b.signIn(e.root)
	p := b.post("/mailboxes", "/mailboxes", url.Values{"address": {"billing@example.com"}, "group_id": {gid}})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("create: %d %s", p.Code, p.Body)
	}
	loc := p.Header.Get("Location")
	p = b.post(loc, loc+"/passwords", url.Values{"name": {"laptop"}})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("password: %d %s", p.Code, p.Body)
	}
	p = b.follow(p)
	pw := extract(t, p.Body, `id="new-pw" readonly value="(smx_mbx_[^"]+)"`)
	if strings.Contains(b.get(loc).Body, pw) {
		t.Fatal("the password is shown again")
	}
	if p := b.post(loc, loc+"/suspend", nil); p.Code != http.StatusSeeOther || !strings.Contains(b.get(loc).Body, "suspended") {
		t.Fatalf("suspend: %d", p.Code)
	}
	if p := b.post(loc, loc+"/resume", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("resume: %d", p.Code)
	}
	pid := extract(t, b.get(loc).Body, `/passwords/([^/"]+)/revoke`)
	if p := b.post(loc, loc+"/passwords/"+pid+"/revoke", nil); p.Code != http.StatusSeeOther || !strings.Contains(b.get(loc).Body, "revoked") {
		t.Fatalf("revoke: %d", p.Code)
	}
	if w := b.get("/groups/" + gid + "/delete").Body; !strings.Contains(w, "billing@example.com") {
		t.Fatal("the group delete warning does not name the mailbox")
	}
}

// TestWebhooks: create (secret shown once), send a test event (its
// delivery is listed), rotate the secret, disable, delete; a form without
// events is the API's 422.
func TestWebhooks(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) { o.Webhooks.AllowPrivateTargets = true })
	b := e.browser()
	b.signIn(e.root)
	if p := b.post("/webhooks", "/webhooks", url.Values{"url": {"http://127.0.0.1:9/hook"}}); p.Code != http.StatusUnprocessableEntity || !strings.Contains(p.Body, "event_types") {
		t.Fatalf("no events: %d %s", p.Code, p.Body)
	}
	p := b.post("/webhooks", "/webhooks", url.Values{"name": {"ops"}, "url": {"http://127.0.0.1:9/hook"}, "event_types": webhook.EventTypes[:2]})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("create: %d %s", p.Code, p.Body)
	}
	p = b.follow(p)
	secret := extract(t, p.Body, `id="hook-secret" readonly value="([^"]+)"`)
	id := extract(t, p.Body, `action="/webhooks/([^/"]+)/test"`)
	loc := "/webhooks/" + id
	if strings.Contains(b.get(loc).Body, secret) {
		t.Fatal("the secret is shown again")
	}
	if p := b.post(loc, loc+"/test", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("test: %d %s", p.Code, p.Body)
	}
	if page := b.get(loc); !strings.Contains(page.Body, "Test event queued") || !strings.Contains(page.Body, `<th scope="col">Attempts</th>`) {
		t.Fatalf("no test delivery listed: %s", page.Body)
	}
	p = b.follow(b.post(loc, loc+"/rotate-secret", nil))
	if next := extract(t, p.Body, `id="hook-secret" readonly value="([^"]+)"`); next == secret {
		t.Fatal("rotation kept the secret")
	}
	if p := b.post(loc, loc+"/disable", nil); p.Code != http.StatusSeeOther || !strings.Contains(b.get(loc).Body, ">disabled<") {
		t.Fatalf("disable: %d", p.Code)
	}
	if p := b.post(loc, loc+"/delete", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.Code)
	}
	if p := b.get(loc); p.Code != http.StatusNotFound {
		t.Fatalf("after delete: %d", p.Code)
	}
}
