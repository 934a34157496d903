package dashboard

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/admin/webhook"
)

// TestSecretShownOnceNoStore: a form that makes a secret (API key,
// mailbox password, webhook secret, rotated webhook secret) answers 303
// without it; the next GET shows it, with Cache-Control: no-store; a
// reload (a second GET) shows it no more and makes nothing; and a secret
// made while another page is loaded first is dropped, not kept for later.
func TestSecretShownOnceNoStore(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) { o.Webhooks.AllowPrivateTargets = true })
	b := e.browser()
	b.signIn(e.root)
	_, body := e.apiDo("POST", "/api/v1/delivery-groups", e.root, `{"name":"eu"}`)
	gid := extract(t, body, `"id":"([^"]+)"`)
	mbox := b.post("/mailboxes", "/mailboxes", url.Values{"address": {"a@example.com"}, "group_id": {gid}}).Header.Get("Location")
	hooks := func() int {
		_, body := e.apiDo("GET", "/api/v1/webhooks", e.root, "")
		return strings.Count(body, `"secret_prefix"`)
	}
	keys := func() int {
		_, body := e.apiDo("GET", "/api/v1/api-keys", e.root, "")
		return strings.Count(body, `"prefix"`)
	}
	pws := func() int {
		_, body := e.apiDo("GET", "/api/v1"+mbox+"/passwords", e.root, "")
		return strings.Count(body, `"prefix"`)
	}
	hookForm := url.Values{"name": {"ops"}, "url": {"http://127.0.0.1:9/hook"}, "event_types": webhook.EventTypes[:1]}
	cases := []struct {
		name, from, to string
		form           url.Values
		secretRE       string
		count          func() int
	}{
		{"api key", "/keys", "/keys", url.Values{"name": {"app"}, "type": {"sending"}}, `id="new-key" readonly value="([^"]+)"`, keys},
		{"mailbox password", mbox, mbox + "/passwords", url.Values{"name": {"laptop"}}, `id="new-pw" readonly value="([^"]+)"`, pws},
		{"webhook secret", "/webhooks", "/webhooks", hookForm, `id="hook-secret" readonly value="([^"]+)"`, hooks},
	}
	for _, c := range cases {
		before := c.count()
		p := b.post(c.from, c.to, c.form)
		if p.Code != http.StatusSeeOther || p.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: post answered %d (Cache-Control %q), want 303 no-store", c.name, p.Code, p.Header.Get("Cache-Control"))
		}
		if regexp.MustCompile(c.secretRE).MatchString(p.Body) {
			t.Fatalf("%s: the post's answer holds the secret", c.name)
		}
		shown := b.follow(p)
		if shown.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: the page showing the secret is cacheable: %q", c.name, shown.Header.Get("Cache-Control"))
		}
		secret := extract(t, shown.Body, c.secretRE)
		reload := b.get(p.Header.Get("Location"))
		if reload.Code != http.StatusOK || strings.Contains(reload.Body, secret) {
			t.Fatalf("%s: a reload shows the secret again (%d)", c.name, reload.Code)
		}
		if n := c.count(); n != before+1 {
			t.Fatalf("%s: %d made, want 1", c.name, n-before)
		}
		// Made, then another page loaded first: the secret is gone.
		p = b.post(c.from, c.to, c.form)
		b.get("/overview")
		if page := b.get(p.Header.Get("Location")); regexp.MustCompile(c.secretRE).MatchString(page.Body) {
			t.Fatalf("%s: a secret was kept past the next page", c.name)
		}
	}
	// Rotation is the same.
	_, list := e.apiDo("GET", "/api/v1/webhooks", e.root, "")
	hid := extract(t, list, `"id":"([^"]+)"`)
	loc := "/webhooks/" + hid
	p := b.post(loc, loc+"/rotate-secret", nil)
	if p.Code != http.StatusSeeOther {
		t.Fatalf("rotate: %d %s", p.Code, p.Body)
	}
	secret := extract(t, b.follow(p).Body, `id="hook-secret" readonly value="([^"]+)"`)
	if strings.Contains(b.get(loc).Body, secret) {
		t.Fatal("rotated secret shown again")
	}
	// Every signed-in page is no-store, not only those showing a secret.
	for _, path := range []string{"/overview", "/accounts", "/logs", "/groups", "/keys", "/domains", "/mailboxes", "/webhooks", mbox, loc} {
		if p := b.get(path); p.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: Cache-Control %q", path, p.Header.Get("Cache-Control"))
		}
	}
}
