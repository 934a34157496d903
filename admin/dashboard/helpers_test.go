package dashboard

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/store"
)

const testOperator = "operator-token-for-dashboard-tests"

// env is the Management API and the dashboard on one real listener, over
// a fresh bbolt store, mounted the way cmd mounts them.
type env struct {
	t      testing.TB
	st     *store.Store
	api    *admin.Server
	dash   *Dashboard
	srv    *httptest.Server
	team   *store.Team
	root   string
	clock  *clock
	limits *countingAttempts
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingAttempts is a per-address failure limit like the relay's:
// after max failures the address is refused unchecked.
type countingAttempts struct {
	mu     sync.Mutex
	max    int
	failed map[string]int
}

func (a *countingAttempts) ReserveAuth(ip string) (bool, time.Duration, func(bool)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed[ip] >= a.max {
		return false, time.Minute, nil
	}
	return true, 0, func(failed bool) {
		if failed {
			a.mu.Lock()
			a.failed[ip]++
			a.mu.Unlock()
		}
	}
}

func newEnv(t testing.TB, mods ...func(*admin.Options)) *env {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := store.NewSealer("test-secret-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, clock: &clock{t: time.Now().UTC()},
		limits: &countingAttempts{max: 5, failed: map[string]int{}}}
	opts := admin.Options{Store: st, Sealer: sealer, Logger: slog.New(slog.DiscardHandler),
		OperatorToken: testOperator, HTTP: admin.HTTPOptions{AuthAttempts: e.limits},
		Providers: admin.ProviderOptions{AllowPrivateHosts: true}}
	for _, m := range mods {
		m(&opts)
	}
	e.api = admin.New(opts)
	e.dash = New(Options{API: e.api, Auth: e.api, Now: e.clock.Now})
	mux := http.NewServeMux()
	e.dash.Mount(mux)
	mux.Handle("/", e.api)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.team, e.root = e.provision("default")
	return e
}

func (e *env) provision(name string) (*store.Team, string) {
	e.t.Helper()
	secret := store.NewSecret(store.SecretPrefixRoot)
	team, _, err := admin.ProvisionTeam(e.st, name, secret, nil, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return team, secret
}

// addKey stores a key of the team directly and returns its secret.
func (e *env) addKey(teamID, typ string, perms ...string) string {
	e.t.Helper()
	prefix := store.SecretPrefixRoot
	if typ == store.KeySending {
		prefix = store.SecretPrefixSending
	}
	secret := store.NewSecret(prefix)
	k := &store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: teamID, Name: "limited", Type: typ,
		Prefix: secret[:12], Hash: store.HashSecret(secret), Permissions: perms,
		SendScope: store.Scope{Type: "all"}, CreatedAt: time.Now()}
	if err := e.st.CreateKey(k); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// browser is a cookie-keeping client that does not follow redirects, so
// tests see each answer.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page_ struct {
	Code   int
	Header http.Header
	Body   string
}

func (b *browser) do(method, path string, form url.Values) page_ {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return page_{Code: res.StatusCode, Header: res.Header, Body: string(data)}
}

func (b *browser) get(path string) page_ { return b.do("GET", path, nil) }

// follow is the GET a browser makes after a 303.
func (b *browser) follow(p page_) page_ {
	b.e.t.Helper()
	if p.Code != http.StatusSeeOther || p.Header.Get("Location") == "" {
		b.e.t.Fatalf("not a redirect: %d %s", p.Code, p.Body)
	}
	return b.get(p.Header.Get("Location"))
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the first form token on the page at path.
func (b *browser) csrf(path string) string {
	b.e.t.Helper()
	p := b.get(path)
	m := csrfRE.FindStringSubmatch(p.Body)
	if m == nil {
		b.e.t.Fatalf("no csrf token on %s (%d): %s", path, p.Code, p.Body)
	}
	return m[1]
}

// post sends form with the CSRF token of the page at from.
func (b *browser) post(from, path string, form url.Values) page_ {
	b.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", b.csrf(from))
	return b.do("POST", path, form)
}

// signIn signs in with secret and returns the answer to the form.
func (b *browser) signIn(secret string) page_ {
	b.e.t.Helper()
	return b.post("/signin", "/signin", url.Values{"key": {secret}})
}

// apiPost calls the Management API directly with a Bearer key.
func (e *env) apiDo(method, path, secret, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func extract(t testing.TB, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s not in %s", re, s)
	}
	return m[1]
}
