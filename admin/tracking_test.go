package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// rawDo runs a request without credentials and returns the recorder, for
// answers that are not JSON envelopes (redirects).
func rawDo(h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1] // what net/http fills from the Host header
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// linkHost is the tracking domain addLink's links are issued for: the
// Host httptest.NewRequest gives a request by default.
const linkHost = "example.com"

// addLink stores a tracking link the way the shaper does, for linkHost,
// which the team owns (a verified domain) the first time.
func (e *testEnv) addLink(token, msgID, url string, index int) {
	e.t.Helper()
	if _, err := e.st.DomainByName(e.team.ID, linkHost); err != nil {
		e.verifiedDomain(e.team.ID, linkHost)
	}
	e.saveLink(store.TrackingLink{Token: token, TeamID: e.team.ID, MessageID: msgID,
		Index: index, URL: url, CreatedAt: e.clock.Now(), Host: linkHost})
}

func (e *testEnv) saveLink(l store.TrackingLink) {
	e.t.Helper()
	err := e.st.SaveTrackingLinks([]store.TrackingLink{l})
	if err != nil {
		e.t.Fatal(err)
	}
}

// expectJSON404 checks a 404 in the error envelope.
func expectJSON404(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	var env struct {
		OK    bool                  `json:"ok"`
		Error struct{ Code string } `json:"error"`
	}
	if rec.Code != 404 || json.Unmarshal(rec.Body.Bytes(), &env) != nil || env.OK || env.Error.Code != "not_found" {
		t.Fatalf("want JSON 404, got %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

func TestTrackingRedirectAndClick(t *testing.T) {
	var mu sync.Mutex
	var clicks []string
	e := newEnv(t, func(o *Options) {
		o.Hooks.OnClick = func(team, msg, url string) {
			mu.Lock()
			defer mu.Unlock()
			clicks = append(clicks, team+" "+msg+" "+url)
		}
	})
	msgID := store.NewID(store.PrefixMessage)
	target := "https://shop.example/sale?id=7&x=%20y#top"
	e.addLink("tok_AAAAAAAAAAAAAAAAAAAA", msgID, target, 3)

	rec := rawDo(e.srv, "GET", "/t/tok_AAAAAAAAAAAAAAAAAAAA", "User-Agent", "Mailer/1.0", "Host", "Example.COM:8080")
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != target ||
		rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("redirect: %d %v", rec.Code, rec.Header())
	}
	l, err := e.st.TrackingLinkByToken("tok_AAAAAAAAAAAAAAAAAAAA")
	if err != nil || l.Clicks != 1 || l.LastUserAgent != "Mailer/1.0" || l.FirstClickAt == nil ||
		!l.FirstClickAt.Equal(e.clock.Now()) {
		t.Fatalf("click not recorded: %v %+v", err, l)
	}
	mu.Lock()
	got := strings.Join(clicks, "|")
	mu.Unlock()
	if got != e.team.ID+" "+msgID+" "+target {
		t.Fatalf("OnClick saw %q", got)
	}

	// HEAD (link checkers) redirects without counting.
	if rec := rawDo(e.srv, "HEAD", "/t/tok_AAAAAAAAAAAAAAAAAAAA"); rec.Code != http.StatusFound {
		t.Fatalf("HEAD: %d", rec.Code)
	}
	if l, _ := e.st.TrackingLinkByToken("tok_AAAAAAAAAAAAAAAAAAAA"); l.Clicks != 1 {
		t.Fatalf("HEAD counted a click: %d", l.Clicks)
	}

	// Unknown, altered and malformed tokens are 404 in JSON, never a redirect.
	for _, p := range []string{"/t/tok_AAAAAAAAAAAAAAAAAAAB", "/t/tok_AAAAAAAAAAAAAAAAAAA", "/t/" + strings.Repeat("a", 65),
		"/t/a.b", "/t/%2Fevil.example"} {
		expectJSON404(t, rawDo(e.srv, "GET", p))
	}
	// A stored target that is not http(s) is never followed.
	e.addLink("tok_script", msgID, "javascript:alert(1)", 4)
	expectJSON404(t, rawDo(e.srv, "GET", "/t/tok_script"))
	if rec := rawDo(e.srv, "POST", "/t/tok_AAAAAAAAAAAAAAAAAAAA"); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

func TestTrackingClickWebhookEvent(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/webhooks", map[string]any{"url": "https://hooks.example.com/clicks", "event_types": []string{"message.clicked"}})
	if r.Code != 201 {
		t.Fatalf("webhook: %s", r.Body)
	}
	hook := r.str("data.id")
	msgID := store.NewID(store.PrefixMessage)
	e.addLink("tokWebhook", msgID, "http://example.com/a", 0)
	if rec := rawDo(e.srv, "GET", "/t/tokWebhook", "User-Agent", "UA"); rec.Code != http.StatusFound {
		t.Fatalf("redirect: %d", rec.Code)
	}
	ds, _, err := e.st.WebhookDeliveries(hook, "", "", 10)
	if err != nil || len(ds) != 1 || ds[0].EventType != "message.clicked" {
		t.Fatalf("deliveries: %v %+v", err, ds)
	}
	var ev struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(ds[0].Event, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Data["message_id"] != msgID || ev.Data["url"] != "http://example.com/a" || ev.Data["link_index"] != float64(0) ||
		ev.Data["user_agent"] != "UA" {
		t.Fatalf("event data: %s", ds[0].Event)
	}
}

func TestTrackingHandlerServesOnlyRedirects(t *testing.T) {
	e := newEnv(t)
	e.addLink("tokOnly", store.NewID(store.PrefixMessage), "https://example.com/", 0)
	h := e.srv.TrackingHandler()
	if rec := rawDo(h, "GET", "/t/tokOnly"); rec.Code != http.StatusFound {
		t.Fatalf("redirect on the tracking listener: %d", rec.Code)
	}
	if rec := rawDo(h, "GET", "/healthz"); rec.Code != 200 {
		t.Fatalf("healthz: %d", rec.Code)
	}
	// The Management API is not reachable there, even with a valid key.
	rec := rawDo(h, "GET", "/api/v1/providers", "Authorization", "Bearer "+e.root)
	expectJSON404(t, rec)
	if rec.Header().Get("X-Request-Id") == "" {
		t.Fatal("404 without a request ID")
	}
}

// A link redirects only for the tracking domain it was issued for, only on
// the tracking listener when there is one, and only until it expires
// (issue 12, item 5). Every refusal is the same JSON 404 and counts no
// click.
func TestTrackingRedirectBoundToHostAndExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HTTP.TrackingListener = true })
	e.verifiedDomain(e.team.ID, "team-a.example")
	h := e.srv.TrackingHandler()
	msgID := store.NewID(store.PrefixMessage)
	exp := e.clock.Now().Add(time.Hour)
	e.saveLink(store.TrackingLink{Token: "tokTeamA", TeamID: e.team.ID, MessageID: msgID, URL: "https://a.example/",
		CreatedAt: e.clock.Now(), Host: "t.team-a.example", ExpiresAt: &exp})
	// Stored before links recorded their host: refused everywhere.
	e.saveLink(store.TrackingLink{Token: "tokLegacy", TeamID: e.team.ID, MessageID: msgID, URL: "https://a.example/old",
		CreatedAt: e.clock.Now()})

	if rec := rawDo(h, "GET", "/t/tokTeamA", "Host", "t.team-a.example"); rec.Code != http.StatusFound {
		t.Fatalf("own tracking domain: %d %s", rec.Code, rec.Body)
	}
	// Team B's tracking domain, the API's host, and the API listener even
	// with the right Host: all 404.
	expectJSON404(t, rawDo(h, "GET", "/t/tokTeamA", "Host", "t.team-b.example"))
	expectJSON404(t, rawDo(h, "GET", "/t/tokTeamA", "Host", "127.0.0.1:8025"))
	expectJSON404(t, rawDo(e.srv, "GET", "/t/tokTeamA", "Host", "t.team-a.example"))
	expectJSON404(t, rawDo(h, "GET", "/t/tokLegacy", "Host", "t.team-a.example"))
	expectJSON404(t, rawDo(h, "GET", "/t/tokLegacy", "Host", "example.com"))
	// Expired.
	e.clock.Advance(time.Hour)
	expectJSON404(t, rawDo(h, "GET", "/t/tokTeamA", "Host", "t.team-a.example"))
	if l, _ := e.st.TrackingLinkByToken("tokTeamA"); l.Clicks != 1 {
		t.Fatalf("clicks: %d, want only the one redirect", l.Clicks)
	}
}
