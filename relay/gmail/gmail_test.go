package gmail

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
	"github.com/smtpmux/smtpmux/routing"
)

// fakeGmail is users.messages.send on the fake Google server: it checks
// the bearer token, decodes the message like Gmail (JSON "raw" base64url
// or the media upload) and records it. fail, when set, answers instead.
type fakeGmail struct {
	idp  *oauthtest.Server
	mu   sync.Mutex
	sent []*oauthtest.Message
	fail func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeGmail(t *testing.T) *fakeGmail {
	g := &fakeGmail{idp: oauthtest.New(t, oauth.KindGoogle)}
	g.idp.Email, g.idp.DisplayName = "owner@gmail.test", "Owner"
	g.idp.Mux.HandleFunc("POST /gmail/v1/users/me/messages/send", g.send)
	g.idp.Mux.HandleFunc("POST /upload/gmail/v1/users/me/messages/send", g.send)
	return g
}

func googleError(w http.ResponseWriter, code int, reason, msg string) {
	oauthtest.WriteJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg,
		"errors": []any{map[string]any{"domain": "global", "reason": reason, "message": msg}}}})
}

func (g *fakeGmail) send(w http.ResponseWriter, r *http.Request) {
	if !g.idp.Authorized(r) {
		g.idp.Unauthorized(w)
		return
	}
	g.mu.Lock()
	fail := g.fail
	g.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if fail != nil && fail(w, r) {
		return
	}
	var raw []byte
	if strings.HasPrefix(r.URL.Path, "/upload/") {
		if r.URL.Query().Get("uploadType") != "media" || r.Header.Get("Content-Type") != "message/rfc822" {
			googleError(w, 400, "badRequest", "Media type not supported")
			return
		}
		raw = body
	} else {
		var m struct {
			Raw string `json:"raw"`
		}
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &m) != nil {
			googleError(w, 400, "parseError", "Parse Error")
			return
		}
		if m.Raw == "" {
			googleError(w, 400, "invalidArgument", "'raw' RFC822 payload message string or uploading message via /upload/* URL required")
			return
		}
		var err error
		if raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(m.Raw, "=")); err != nil {
			googleError(w, 400, "invalidArgument", "Invalid value for ByteString")
			return
		}
	}
	msg, err := oauthtest.ParseMessage(raw)
	if err != nil {
		googleError(w, 400, "invalidArgument", err.Error())
		return
	}
	g.mu.Lock()
	g.sent = append(g.sent, msg)
	id := fmt.Sprintf("18f%05d", len(g.sent))
	g.mu.Unlock()
	oauthtest.WriteJSON(w, 200, map[string]any{"id": id, "threadId": id, "labelIds": []string{"SENT"}})
}

func (g *fakeGmail) setFail(f func(w http.ResponseWriter, r *http.Request) bool) {
	g.mu.Lock()
	g.fail = f
	g.mu.Unlock()
}

// account is a provider on g as cmd would wire it, starting from stored,
// recording the tokens it persists.
type account struct {
	p        *Provider
	persists []*oauth2.Token
	mu       sync.Mutex
}

func newAccount(t *testing.T, g *fakeGmail, stored *oauth2.Token, mod func(*Config)) *account {
	t.Helper()
	conn, err := oauth.New([]oauth.Provider{g.idp.Provider("https://mux.test/oauth/callback")}, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &account{}
	ts := conn.TokenSource(context.Background(), oauth.KindGoogle, stored, func(tok *oauth2.Token) error {
		a.mu.Lock()
		a.persists = append(a.persists, tok)
		a.mu.Unlock()
		return nil
	})
	prov, _ := conn.Provider(oauth.KindGoogle)
	cfg := Config{APIBaseURL: prov.APIBaseURL, TokenSource: ts, Email: g.idp.Email}
	if mod != nil {
		mod(&cfg)
	}
	if a.p, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return a
}

const (
	message = "From: \"Alice App\" <alice@app.test>\r\nTo: Bob <bob@x.test>\r\nSubject: Hi\r\n" +
		"Message-ID: <1@app.test>\r\n\r\nbody line\r\n.dot\r\n\r\nFrom: in the body\r\n"
	wantBody = "body line\r\n.dot\r\n\r\nFrom: in the body\r\n"
)

var env = relay.Envelope{MessageID: "eml_1", From: "bounce@app.test", To: []string{"bob@x.test", "dave@y.test"}}

func TestSend(t *testing.T) {
	tests := []struct {
		name string
		// stored is the token the account starts with.
		stored        func(*oauthtest.Server) *oauth2.Token
		before        func(*oauthtest.Server)
		upload        bool
		wantRefreshes int
	}{
		{name: "valid token", stored: (*oauthtest.Server).Grant},
		{name: "expired token is refreshed first", wantRefreshes: 1,
			stored: func(s *oauthtest.Server) *oauth2.Token {
				tok := s.Grant()
				tok.AccessToken, tok.Expiry = "old", time.Now().Add(-time.Second)
				return tok
			}},
		{name: "token revoked early: 401, refresh, retry", wantRefreshes: 1,
			stored: (*oauthtest.Server).Grant, before: (*oauthtest.Server).ExpireAccess},
		{name: "large message by media upload", stored: (*oauthtest.Server).Grant, upload: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGmail(t)
			stored := tt.stored(g.idp)
			a := newAccount(t, g, stored, func(c *Config) {
				if tt.upload {
					c.UploadThreshold = 64
				}
			})
			if tt.before != nil {
				tt.before(g.idp)
			}
			res, err := a.p.Send(context.Background(), env, []byte(message))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(g.sent) != 1 || res.UpstreamID != "18f00001" {
				t.Fatalf("%d sent, upstream id %q", len(g.sent), res.UpstreamID)
			}
			m := g.sent[0]
			if string(m.Body) != wantBody {
				t.Fatalf("body changed: %q", m.Body)
			}
			if got := m.Header.Get("From"); got != `"Alice App" <owner@gmail.test>` {
				t.Fatalf("From %q", got)
			}
			if m.Header.Get("Bcc") != "dave@y.test" || m.Header.Get("Subject") != "Hi" || m.Header.Get("Message-Id") != "<1@app.test>" {
				t.Fatalf("header %v", m.Header)
			}
			if got := strings.Join(m.Recipients, ","); got != "bob@x.test,dave@y.test" {
				t.Fatalf("delivered to %s", got)
			}
			if n := g.idp.Refreshes(); n != tt.wantRefreshes {
				t.Fatalf("%d refreshes, want %d", n, tt.wantRefreshes)
			}
			// Each refresh hands the new token to the store.
			if len(a.persists) != tt.wantRefreshes {
				t.Fatalf("%d tokens persisted, want %d", len(a.persists), tt.wantRefreshes)
			}
			if tt.wantRefreshes > 0 && (a.persists[0].AccessToken == stored.AccessToken || a.persists[0].RefreshToken != stored.RefreshToken) {
				t.Fatalf("persisted %+v", a.persists[0])
			}
		})
	}
}

func TestSendFailures(t *testing.T) {
	answer := func(code int, reason string) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, _ *http.Request) bool {
			googleError(w, code, reason, "scripted "+reason)
			return true
		}
	}
	tests := []struct {
		name    string
		before  func(*fakeGmail)
		body    string
		hang    bool // the body is read, then the caller stops waiting
		class   routing.Class
		revoked bool
		sent    bool // BodySent
	}{
		{name: "grant revoked", class: routing.Auth, revoked: true, before: func(g *fakeGmail) { g.idp.Revoke() }},
		{name: "429", class: routing.Quota, before: func(g *fakeGmail) { g.setFail(answer(429, "rateLimitExceeded")) }},
		{name: "403 daily limit", class: routing.Quota, before: func(g *fakeGmail) { g.setFail(answer(403, "dailyLimitExceeded")) }},
		{name: "403 user rate limit", class: routing.Quota, before: func(g *fakeGmail) { g.setFail(answer(403, "userRateLimitExceeded")) }},
		{name: "403 scope missing", class: routing.Auth, revoked: true, before: func(g *fakeGmail) { g.setFail(answer(403, "insufficientPermissions")) }},
		{name: "403 domain policy", class: routing.Auth, before: func(g *fakeGmail) { g.setFail(answer(403, "domainPolicy")) }},
		{name: "500", class: routing.Transient, before: func(g *fakeGmail) { g.setFail(answer(500, "backendError")) }},
		{name: "503", class: routing.Transient, before: func(g *fakeGmail) { g.setFail(answer(503, "backendError")) }},
		{name: "400 invalid message", class: routing.Permanent, body: "From: a@app.test\r\nTo: bob@@\r\n\r\nx", before: func(g *fakeGmail) {
			g.setFail(answer(400, "invalidArgument"))
		}},
		{name: "413", class: routing.Permanent, before: func(g *fakeGmail) { g.setFail(answer(413, "uploadTooLarge")) }},
		{name: "no answer after the body", class: routing.Uncertain, sent: true, hang: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGmail(t)
			a := newAccount(t, g, g.idp.Grant(), nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.hang {
				// Giving up once the whole request is in (send reads the
				// body before asking fail) stands for a deadline expiring
				// while waiting for the answer, without racing the clock.
				g.setFail(func(_ http.ResponseWriter, r *http.Request) bool { cancel(); <-r.Context().Done(); return true })
			} else {
				tt.before(g)
			}
			body := message
			if tt.body != "" {
				body = tt.body
			}
			_, err := a.p.Send(ctx, env, []byte(body))
			de, ok := err.(*relay.DeliveryError)
			if !ok {
				t.Fatalf("Send: %v (%T), want a DeliveryError", err, err)
			}
			if de.Classified() != tt.class || mailapi.IsGrantRevoked(err) != tt.revoked || de.Failure.BodySent != tt.sent {
				t.Fatalf("class %v revoked %v bodySent %v (%q), want %v %v %v", de.Classified(),
					mailapi.IsGrantRevoked(err), de.Failure.BodySent, de.Failure.Text, tt.class, tt.revoked, tt.sent)
			}
			if tt.revoked && !strings.HasPrefix(de.Failure.Text, mailapi.GrantRevokedPrefix) {
				t.Fatalf("text %q", de.Failure.Text)
			}
			if tt.name == "grant revoked" && !strings.Contains(de.Failure.Text, "invalid_grant") {
				t.Fatalf("text %q does not mention invalid_grant", de.Failure.Text)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	g := newFakeGmail(t)
	a := newAccount(t, g, g.idp.Grant(), nil)
	if _, err := a.p.Test(context.Background()); err != nil {
		t.Fatalf("Test: %v", err)
	}
	if len(g.sent) != 0 {
		t.Fatal("Test sent a message")
	}
	g.idp.Revoke()
	_, err := a.p.Test(context.Background())
	if !mailapi.IsGrantRevoked(err) {
		t.Fatalf("Test after revoke: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})
	for _, cfg := range []Config{
		{Email: "a@b.test"},
		{TokenSource: ts, Email: "A <a@b.test>"},
		{TokenSource: ts, Email: "a@b.test", APIBaseURL: "gmail.googleapis.com"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	p, err := New(Config{TokenSource: ts, Email: "a@b.test"})
	if err != nil || p.cfg.APIBaseURL != oauth.GoogleAPIBaseURL {
		t.Fatalf("defaults: %+v %v", p.cfg, err)
	}
}

// TestConnectThenSend is the whole path: start → consent → callback →
// the provider built from the grant sends as the connected address.
func TestConnectThenSend(t *testing.T) {
	g := newFakeGmail(t)
	conn, err := oauth.New([]oauth.Provider{g.idp.Provider("https://mux.test/oauth/callback")}, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	authURL, _, err := conn.Start("team1", oauth.KindGoogle)
	if err != nil {
		t.Fatal(err)
	}
	code, state, err := g.idp.Consent(authURL)
	if err != nil {
		t.Fatal(err)
	}
	grant, err := conn.Finish(context.Background(), state, code)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	p, err := New(Config{APIBaseURL: g.idp.URL, Email: grant.Email,
		TokenSource: conn.TokenSource(context.Background(), grant.Kind, grant.Token, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(context.Background(), env, []byte(message)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := g.sent[0].Header.Get("From"); got != `"Alice App" <owner@gmail.test>` {
		t.Fatalf("From %q", got)
	}
}
