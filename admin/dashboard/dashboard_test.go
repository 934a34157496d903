package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

const smtpJSON = `{"type":"smtp","name":%q,"smtp_host":"127.0.0.1","smtp_port":2525,"smtp_protocol":"none"}`

// TestSessionCookieAndSignOut: the session cookie is HttpOnly and
// SameSite=Strict, sign-out ends the session on the server (the old
// cookie no longer works), and a signed-out visit goes to sign-in.
func TestSessionCookieAndSignOut(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	if p := b.get("/accounts"); p.Code != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/signin?next=") {
		t.Fatalf("signed out: %d %q", p.Code, p.Header.Get("Location"))
	}
	p := b.signIn(e.root)
	c := p.Header.Get("Set-Cookie")
	for _, want := range []string{cookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(c, want) {
			t.Errorf("cookie %q lacks %q", c, want)
		}
	}
	if strings.Contains(c, e.root) {
		t.Fatal("the cookie carries the key")
	}
	old := sessionCookie(t, b)
	if p := b.post("/accounts", "/signout", nil); p.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.Code)
	}
	// The old session ID, replayed, is dead.
	b2 := e.browser()
	u, _ := url.Parse(e.srv.URL)
	b2.c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: old}})
	if p := b2.get("/accounts"); p.Code != http.StatusSeeOther {
		t.Fatalf("after sign-out the old cookie still works: %d", p.Code)
	}
}

func sessionCookie(t *testing.T, b *browser) string {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == cookieName {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestIdleExpiry: a session unused for longer than the idle timeout ends.
func TestIdleExpiry(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.root)
	if p := b.get("/accounts"); p.Code != 200 {
		t.Fatalf("%d", p.Code)
	}
	e.clock.Advance(29 * time.Minute)
	if p := b.get("/accounts"); p.Code != 200 {
		t.Fatalf("used within the idle time: %d", p.Code)
	}
	e.clock.Advance(31 * time.Minute)
	if p := b.get("/accounts"); p.Code != http.StatusSeeOther {
		t.Fatalf("idle session still served: %d", p.Code)
	}
}

// TestSendingKeyCannotSignIn: a sending key is refused as the Management
// API refuses it; so are unknown and revoked keys.
func TestSendingKeyCannotSignIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	sk := e.addKey(e.team.ID, store.KeySending)
	p := b.signIn(sk)
	if p.Code != http.StatusForbidden || !strings.Contains(p.Body, "sending keys cannot use the Management API") {
		t.Fatalf("sending key: %d %s", p.Code, p.Body)
	}
	if p := b.signIn(store.NewSecret(store.SecretPrefixRoot)); p.Code != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d", p.Code)
	}
	if p := b.get("/accounts"); p.Code != http.StatusSeeOther {
		t.Fatalf("a refused sign-in left a session: %d", p.Code)
	}
}

// TestSignInRateLimited: failed sign-ins count against the same
// per-address limit as the API's failed authentications; past it even
// the right key is refused unchecked.
func TestSignInRateLimited(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for i := 0; i < e.limits.max; i++ {
		b.signIn(store.NewSecret(store.SecretPrefixRoot))
	}
	if p := b.signIn(e.root); p.Code != http.StatusTooManyRequests {
		t.Fatalf("past the limit: %d %s", p.Code, p.Body)
	}
	// And the API from the same address is refused too: one counter.
	if code, _ := e.apiDo("GET", "/api/v1/providers", e.root, ""); code != http.StatusTooManyRequests {
		t.Fatalf("API after dashboard failures: %d", code)
	}
}

// TestCSRF: a form without the session's token, or with another
// session's, changes nothing; a cross-site post is refused even with one.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.root)
	form := url.Values{"type": {"smtp"}, "name": {"csrf"}, "smtp_host": {"127.0.0.1"}, "smtp_port": {"25"}, "smtp_protocol": {"none"}}
	if p := b.do("POST", "/accounts/new", form); p.Code != http.StatusForbidden {
		t.Fatalf("no token: %d", p.Code)
	}
	other := e.browser()
	other.signIn(e.root)
	form.Set("csrf", other.csrf("/accounts"))
	if p := b.do("POST", "/accounts/new", form); p.Code != http.StatusForbidden {
		t.Fatalf("another session's token: %d", p.Code)
	}
	form.Set("csrf", b.csrf("/accounts"))
	req, _ := http.NewRequest("POST", e.srv.URL+"/accounts/new", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site post: %d", res.StatusCode)
	}
	ps, _ := e.st.Providers(e.team.ID)
	if len(ps) != 1 {
		t.Fatalf("a refused form created a provider: %d providers", len(ps))
	}
	// The sign-in form has its own token.
	if p := b.do("POST", "/signin", url.Values{"key": {e.root}}); p.Code != http.StatusForbidden {
		t.Fatalf("sign-in without token: %d", p.Code)
	}
}

// TestSecurityHeaders: a strict CSP without inline script, no framing.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, path := range []string{"/signin", "/accounts", "/static/app.css", "/accounts/x/nope"} {
		p := b.get(path)
		csp := p.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "style-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || p.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: CSP %q, XFO %q", path, csp, p.Header.Get("X-Frame-Options"))
		}
	}
	b.signIn(e.root)
	for _, path := range []string{"/accounts", "/accounts/new?type=smtp", "/logs", "/overview", "/groups"} {
		body := b.get(path).Body
		if strings.Contains(body, "<script") || strings.Contains(body, " style=") || strings.Contains(body, "<style") {
			t.Errorf("%s has inline script or style", path)
		}
	}
}

// TestOpenRedirect: sign-in's return path stays on this site.
func TestOpenRedirect(t *testing.T) {
	e := newEnv(t)
	for next, want := range map[string]string{
		"/logs?status=sent":     "/logs?status=sent",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"https://evil.example/": "/",
		"/\t/evil.example":      "/",
		"/operator":             "/", // a team session has no operator page
	} {
		b := e.browser()
		tok := b.csrf("/signin?next=" + url.QueryEscape(next))
		p := b.do("POST", "/signin", url.Values{"csrf": {tok}, "key": {e.root}, "next": {next}})
		if got := p.Header.Get("Location"); got != want {
			t.Errorf("next=%q: redirected to %q, want %q", next, got, want)
		}
	}
}

// TestSessionFixation: a session ID planted before sign-in is not the
// signed-in session's.
func TestSessionFixation(t *testing.T) {
	e := newEnv(t)
	attacker := e.browser()
	attacker.signIn(e.root)
	planted := sessionCookie(t, attacker)
	victim := e.browser()
	u, _ := url.Parse(e.srv.URL)
	victim.c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: planted}})
	victim.signIn(e.root)
	if got := sessionCookie(t, victim); got == planted {
		t.Fatal("sign-in kept the planted session ID")
	}
	// Signing in again ends the session the browser came with.
	if p := attacker.get("/accounts"); p.Code != http.StatusSeeOther {
		t.Fatalf("the replaced session still works: %d", p.Code)
	}
}

// TestEscaping: what a tenant typed is shown as text, everywhere.
func TestEscaping(t *testing.T) {
	e := newEnv(t)
	xss := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	code, body := e.apiDo("POST", "/api/v1/providers", e.root, strings.Replace(smtpJSON, "%q", jsonQuote(xss), 1))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	id := extract(t, body, `"id":"(dprov_[^"]+)"`)
	if code, body := e.apiDo("POST", "/api/v1/delivery-groups", e.root, `{"name":`+jsonQuote(xss)+`}`); code != http.StatusCreated {
		t.Fatalf("group: %d %s", code, body)
	}
	b := e.browser()
	b.signIn(e.root)
	for _, path := range []string{"/accounts", "/accounts/" + id, "/accounts/" + id + "/delete", "/groups", "/logs", "/overview"} {
		body := b.get(path).Body
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s renders tenant input as HTML", path)
		}
	}
	if !strings.Contains(b.get("/accounts").Body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the name is not shown as text")
	}
}

// TestOtherTeam: another team's IDs in URLs are the API's 404, and forms
// aimed at them change nothing.
func TestOtherTeam(t *testing.T) {
	e := newEnv(t)
	_, body := e.apiDo("POST", "/api/v1/providers", e.root, strings.Replace(smtpJSON, "%q", `"theirs"`, 1))
	id := extract(t, body, `"id":"(dprov_[^"]+)"`)
	_, other := e.provision("other")
	b := e.browser()
	b.signIn(other)
	if p := b.get("/accounts/" + id); p.Code != http.StatusNotFound {
		t.Fatalf("other team's provider: %d", p.Code)
	}
	b.post("/accounts", "/accounts/"+id+"/deactivate", nil)
	b.post("/accounts", "/accounts/"+id+"/delete", nil)
	if p, err := e.st.Provider(id); err != nil || p.Status != "active" {
		t.Fatalf("other team changed it: %v %v", p, err)
	}
	if p := b.get("/messages/eml_0000000000000000000000000"); p.Code != http.StatusNotFound {
		t.Fatalf("message: %d", p.Code)
	}
	// Every other kind, by a real ID of the first team.
	_, gbody := e.apiDo("POST", "/api/v1/delivery-groups", e.root, `{"name":"theirs"}`)
	_, mbody := e.apiDo("POST", "/api/v1/mailboxes", e.root, `{"address":"theirs@example.com"}`)
	_, dbody := e.apiDo("POST", "/api/v1/domains", e.root, `{"domain":"theirs.example.com"}`)
	for _, path := range []string{
		"/groups/" + extract(t, gbody, `"id":"([^"]+)"`) + "/delete",
		"/mailboxes/" + extract(t, mbody, `"id":"([^"]+)"`),
		"/domains/" + extract(t, dbody, `"id":"([^"]+)"`),
	} {
		if p := b.get(path); p.Code != http.StatusNotFound {
			t.Errorf("%s of another team: %d", path, p.Code)
		}
	}
	k, err := e.st.KeyBySecret(e.root)
	if err != nil {
		t.Fatal(err)
	}
	b.post("/keys", "/keys/"+k.ID+"/revoke", nil)
	if k, _ := e.st.KeyBySecret(e.root); !k.Active() {
		t.Fatal("another team revoked the key")
	}
}

// TestLimitedKey: a key with provider.read only sees the accounts but no
// buttons to change them, and a forged form is the API's 403.
func TestLimitedKey(t *testing.T) {
	e := newEnv(t)
	key := e.addKey(e.team.ID, store.KeyRoot, "provider.read")
	b := e.browser()
	if p := b.signIn(key); p.Code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", p.Code)
	}
	page := b.get("/accounts")
	if page.Code != 200 || strings.Contains(page.Body, "Add account") || strings.Contains(page.Body, ">Deactivate<") {
		t.Fatalf("read-only key sees write buttons: %d", page.Code)
	}
	p := b.post("/accounts", "/accounts/new", url.Values{"type": {"smtp"}, "name": {"x"}, "smtp_host": {"127.0.0.1"}, "smtp_port": {"25"}})
	if !strings.Contains(p.Body, "lacks the provider.create permission") {
		t.Fatalf("create with a read-only key: %d %s", p.Code, p.Body)
	}
	if ps, _ := e.st.Providers(e.team.ID); len(ps) != 1 {
		t.Fatal("a read-only key created a provider")
	}
	if p := b.get("/logs"); !strings.Contains(p.Body, "lacks the email.read permission") {
		t.Fatalf("logs without email.read: %s", p.Body)
	}
}

// TestRevokedKeyEndsSession: revoking the key signs its sessions out at
// their next request (every page re-authenticates through the API).
func TestRevokedKeyEndsSession(t *testing.T) {
	e := newEnv(t)
	key := e.addKey(e.team.ID, store.KeyRoot, "*")
	b := e.browser()
	b.signIn(key)
	k, err := e.st.KeyBySecret(key)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := e.apiDo("DELETE", "/api/v1/api-keys/"+k.ID, e.root, ""); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if p := b.get("/accounts"); p.Code != http.StatusSeeOther || p.Header.Get("Location") != "/signin" {
		t.Fatalf("revoked key's session: %d %q", p.Code, p.Header.Get("Location"))
	}
}

// TestMessageFieldsEscaped: what senders and upstreams control — subject,
// From, recipients, upstream replies and IDs, routing records — is text
// on the log and message pages.
func TestMessageFieldsEscaped(t *testing.T) {
	e := newEnv(t)
	xss := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	at := time.Now().UTC().Add(-time.Minute)
	m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID, Source: "smtp",
		From: xss + "@example.com", Subject: xss,
		Recipients: []store.Recipient{{Address: xss + "@example.net", Status: state.MessageFailed, Code: 550, Reply: xss}},
		Status:     state.MessageFailed, Reason: xss,
		Attempts: []store.Attempt{{N: 1, ProviderID: "dprov_" + xss, StartedAt: at, Status: state.AttemptFailed, Reply: xss,
			UpstreamID: xss, Class: xss,
			Routing: []byte(`{"scope_type":` + jsonQuote(xss) + `,"excluded":[{"provider_id":` + jsonQuote(xss) + `,"reason":` + jsonQuote(xss) + `}],"eligible":[{"provider_id":` + jsonQuote(xss) + `,"weight":1}],"picked":` + jsonQuote(xss) + `}`)}},
		CreatedAt: at, UpdatedAt: at, Size: 10}
	if err := e.st.LoadHistory([]*store.Message{m}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.root)
	for _, path := range []string{"/logs", "/logs?search=" + url.QueryEscape("<script>"), "/messages/" + m.ID, "/overview"} {
		p := b.get(path)
		if p.Code != 200 {
			t.Fatalf("%s: %d %s", path, p.Code, p.Body)
		}
		if strings.Contains(p.Body, "<script>alert") || strings.Contains(p.Body, "<img src=x") {
			t.Errorf("%s renders a sender's or upstream's text as HTML", path)
		}
	}
	if !strings.Contains(b.get("/messages/"+m.ID).Body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the subject is not shown as text")
	}
}

// TestSecureCookie: behind a TLS proxy (secure_cookie) the session cookie
// is Secure.
func TestSecureCookie(t *testing.T) {
	e := newEnv(t)
	e.dash.opts.SecureCookie = true
	p := e.browser().signIn(e.root)
	for _, c := range p.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, cookieName+"=") {
			if !strings.Contains(c, "; Secure") {
				t.Fatalf("session cookie %q is not Secure", c)
			}
			return
		}
	}
	t.Fatalf("no session cookie: %d %v", p.Code, p.Header.Values("Set-Cookie"))
}
