package outlook

import (
	"context"
	"encoding/base64"
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

// fakeGraph is POST /me/sendMail on the fake Microsoft server: it checks
// the bearer token, decodes the base64 MIME body like Graph and records
// the message, answering 202 with a request-id. fail, when set, answers
// instead. GET /me is the fake's own endpoint.
type fakeGraph struct {
	idp  *oauthtest.Server
	mu   sync.Mutex
	sent []*oauthtest.Message
	fail func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeGraph(t *testing.T) *fakeGraph {
	g := &fakeGraph{idp: oauthtest.New(t, oauth.KindMicrosoft)}
	g.idp.Email = "owner@contoso.test"
	g.idp.Mux.HandleFunc("POST /me/sendMail", g.send)
	return g
}

func writeGraphError(w http.ResponseWriter, status int, code, msg string) {
	oauthtest.WriteJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg,
		"innerError": map[string]any{"request-id": "r-1", "date": "2026-01-01T00:00:00"}}})
}

func (g *fakeGraph) send(w http.ResponseWriter, r *http.Request) {
	if !g.idp.Authorized(r) {
		g.idp.Unauthorized(w)
		return
	}
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	fail := g.fail
	g.mu.Unlock()
	if fail != nil && fail(w, r) {
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		writeGraphError(w, 400, "ErrorInvalidRequest", "Cannot process input of type application/json as MIME")
		return
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil {
		writeGraphError(w, 400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
		return
	}
	msg, err := oauthtest.ParseMessage(raw)
	if err != nil {
		writeGraphError(w, 400, "ErrorInvalidRecipients", "At least one recipient is not valid., "+err.Error())
		return
	}
	g.mu.Lock()
	g.sent = append(g.sent, msg)
	n := len(g.sent)
	g.mu.Unlock()
	w.Header().Set("request-id", fmt.Sprintf("req-%d", n))
	w.Header().Set("client-request-id", r.Header.Get("client-request-id"))
	w.WriteHeader(http.StatusAccepted)
}

func (g *fakeGraph) setFail(f func(w http.ResponseWriter, r *http.Request) bool) {
	g.mu.Lock()
	g.fail = f
	g.mu.Unlock()
}

// account is a provider on g as cmd would wire it, starting from stored,
// recording the tokens it persists.
type account struct {
	p        *Provider
	mu       sync.Mutex
	persists []*oauth2.Token
}

func newAccount(t *testing.T, g *fakeGraph, stored *oauth2.Token, mod func(*Config)) *account {
	t.Helper()
	conn, err := oauth.New([]oauth.Provider{g.idp.Provider("https://mux.test/oauth/callback")}, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := &account{}
	ts := conn.TokenSource(context.Background(), oauth.KindMicrosoft, stored, func(tok *oauth2.Token) error {
		a.mu.Lock()
		a.persists = append(a.persists, tok)
		a.mu.Unlock()
		return nil
	})
	prov, _ := conn.Provider(oauth.KindMicrosoft)
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
	message = "From: =?utf-8?q?J=C3=BCrgen_App?= <app@app.test>\r\nSender: relay@app.test\r\n" +
		"To: Bob <bob@x.test>, Zed <zed@x.test>\r\nReply-To: help@app.test\r\nSubject: Hi\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n.\r\n"
	wantBody = "Gr\xc3\xbc\xc3\x9fe\r\n.\r\n"
)

// env is a retry: zed was served by an earlier attempt, dave was a Bcc.
var env = relay.Envelope{MessageID: "eml_1", From: "bounce@app.test", To: []string{"bob@x.test", "dave@y.test"}}

func expired(s *oauthtest.Server) *oauth2.Token {
	tok := s.Grant()
	tok.AccessToken, tok.Expiry = "old", time.Now().Add(-time.Second)
	return tok
}

func TestSend(t *testing.T) {
	tests := []struct {
		name          string
		rotate        bool
		stored        func(*oauthtest.Server) *oauth2.Token
		before        func(*oauthtest.Server)
		wantRefreshes int
	}{
		{name: "valid token", stored: (*oauthtest.Server).Grant},
		{name: "expired token is refreshed first", stored: expired, wantRefreshes: 1},
		{name: "rotated refresh token is persisted", stored: expired, rotate: true, wantRefreshes: 1},
		{name: "token revoked early: 401, refresh, retry", stored: (*oauthtest.Server).Grant,
			before: (*oauthtest.Server).ExpireAccess, wantRefreshes: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGraph(t)
			g.idp.RotateRefresh = tt.rotate
			stored := tt.stored(g.idp)
			a := newAccount(t, g, stored, nil)
			if tt.before != nil {
				tt.before(g.idp)
			}
			res, err := a.p.Send(context.Background(), env, []byte(message))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(g.sent) != 1 || res.UpstreamID != "req-1" {
				t.Fatalf("%d sent, upstream id %q", len(g.sent), res.UpstreamID)
			}
			m := g.sent[0]
			if string(m.Body) != wantBody {
				t.Fatalf("body changed: %q", m.Body)
			}
			h := m.Header
			if got := h.Get("From"); got != "=?utf-8?q?J=C3=BCrgen_App?= <owner@contoso.test>" {
				t.Fatalf("From %q", got)
			}
			if h.Get("Sender") != "" || h.Get("Reply-To") != "help@app.test" || h.Get("To") != `"Bob" <bob@x.test>` || h.Get("Bcc") != "dave@y.test" {
				t.Fatalf("header %v", h)
			}
			if got := strings.Join(m.Recipients, ","); got != "bob@x.test,dave@y.test" {
				t.Fatalf("delivered to %s", got)
			}
			if n := g.idp.Refreshes(); n != tt.wantRefreshes || len(a.persists) != tt.wantRefreshes {
				t.Fatalf("%d refreshes, %d persisted, want %d", n, len(a.persists), tt.wantRefreshes)
			}
			if tt.rotate && a.persists[0].RefreshToken == stored.RefreshToken {
				t.Fatal("the rotated refresh token was not persisted")
			}
		})
	}
}

func TestSendFailures(t *testing.T) {
	answer := func(status int, code, msg string) func(*fakeGraph) {
		return func(g *fakeGraph) {
			g.setFail(func(w http.ResponseWriter, _ *http.Request) bool { writeGraphError(w, status, code, msg); return true })
		}
	}
	tests := []struct {
		name          string
		before        func(*fakeGraph)
		hang          bool // the body is read, then the caller stops waiting
		class         routing.Class
		revoked, sent bool
		refreshes     int
	}{
		{name: "grant revoked", class: routing.Auth, revoked: true, before: func(g *fakeGraph) { g.idp.Revoke() }},
		{name: "401 after refresh", class: routing.Auth, revoked: true, refreshes: 1,
			before: answer(401, "InvalidAuthenticationToken", "Access token validation failure.")},
		{name: "429 mailbox concurrency", class: routing.Quota,
			before: answer(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")},
		{name: "message limit", class: routing.Quota,
			before: answer(403, "ErrorExceededMessageLimit", "Cannot send mail. The mailbox has exceeded its sending limit.")},
		{name: "403 access denied", class: routing.Auth, revoked: true,
			before: answer(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")},
		{name: "403 send as denied", class: routing.Auth, before: answer(403, "ErrorSendAsDenied", "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.")},
		{name: "400 invalid recipients", class: routing.Permanent,
			before: answer(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")},
		{name: "413", class: routing.Permanent, before: answer(413, "RequestEntityTooLarge", "Request body too large.")},
		{name: "500", class: routing.Transient, before: answer(500, "generalException", "An internal server error occurred.")},
		{name: "503", class: routing.Transient, before: answer(503, "ServiceUnavailable", "Service Unavailable")},
		{name: "200 instead of 202", class: routing.Uncertain, sent: true, before: func(g *fakeGraph) {
			g.setFail(func(w http.ResponseWriter, _ *http.Request) bool { w.WriteHeader(200); return true })
		}},
		{name: "no answer after the body", class: routing.Uncertain, sent: true, hang: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFakeGraph(t)
			a := newAccount(t, g, g.idp.Grant(), nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.hang {
				// Giving up once the whole request is in stands for a
				// deadline expiring while waiting for the answer, without
				// racing the clock.
				g.setFail(func(_ http.ResponseWriter, r *http.Request) bool { cancel(); <-r.Context().Done(); return true })
			} else {
				tt.before(g)
			}
			_, err := a.p.Send(ctx, env, []byte(message))
			de, ok := err.(*relay.DeliveryError)
			if !ok {
				t.Fatalf("Send: %v (%T), want a DeliveryError", err, err)
			}
			if de.Classified() != tt.class || mailapi.IsGrantRevoked(err) != tt.revoked || de.Failure.BodySent != tt.sent {
				t.Fatalf("class %v revoked %v bodySent %v (%q), want %v %v %v", de.Classified(),
					mailapi.IsGrantRevoked(err), de.Failure.BodySent, de.Failure.Text, tt.class, tt.revoked, tt.sent)
			}
			if g.idp.Refreshes() != tt.refreshes {
				t.Fatalf("%d refreshes, want %d", g.idp.Refreshes(), tt.refreshes)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	g := newFakeGraph(t)
	a := newAccount(t, g, g.idp.Grant(), nil)
	if _, err := a.p.Test(context.Background()); err != nil {
		t.Fatalf("Test: %v", err)
	}
	g.idp.Email = "someone-else@contoso.test"
	if _, err := a.p.Test(context.Background()); err == nil || err.(*relay.DeliveryError).Classified() != routing.Auth {
		t.Fatalf("Test with another account's token: %v", err)
	}
	g.idp.Revoke()
	if _, err := a.p.Test(context.Background()); !mailapi.IsGrantRevoked(err) {
		t.Fatalf("Test after revoke: %v", err)
	}
}

// TestConnectThenSend is the whole path: start → consent → callback →
// the provider built from the grant sends as the connected address.
func TestConnectThenSend(t *testing.T) {
	g := newFakeGraph(t)
	g.idp.RotateRefresh = true
	conn, err := oauth.New([]oauth.Provider{g.idp.Provider("https://mux.test/oauth/callback")}, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	authURL, _, err := conn.Start("team1", oauth.KindMicrosoft)
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
	if grant.Email != g.idp.Email {
		t.Fatalf("connected %q", grant.Email)
	}
	p, err := New(Config{APIBaseURL: g.idp.URL, Email: grant.Email,
		TokenSource: conn.TokenSource(context.Background(), grant.Kind, grant.Token, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Test(context.Background()); err != nil {
		t.Fatalf("Test: %v", err)
	}
	if _, err := p.Send(context.Background(), env, []byte(message)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := g.sent[0].Header.Get("From"); got != "=?utf-8?q?J=C3=BCrgen_App?= <owner@contoso.test>" {
		t.Fatalf("From %q", got)
	}
}
