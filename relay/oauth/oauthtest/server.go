// Package oauthtest is a fake Google / Microsoft identity platform for
// tests, on a real socket on 127.0.0.1: an authorization endpoint that
// consents at once, a token endpoint implementing the authorization_code
// (with PKCE) and refresh_token grants, the userinfo / Graph /me endpoint,
// and a bearer check that the tests' fake Gmail and Graph APIs mount on
// the same server. Access tokens are short-lived and refresh tokens can be
// revoked, so tests can force refreshes and invalid_grant.
package oauthtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay/oauth"
)

// Server is one fake identity platform of one kind with one account.
// Exported fields may be changed between requests, under no lock, only
// before the server is used concurrently.
type Server struct {
	*httptest.Server
	Mux  *http.ServeMux // mount fake APIs here
	Kind string

	ClientID, ClientSecret string
	Email, DisplayName     string // the account that consents
	// AccessTTL is expires_in of issued access tokens.
	AccessTTL time.Duration
	// RotateRefresh issues a new refresh token on every refresh and
	// retires the old one, as Microsoft does.
	RotateRefresh bool
	// Scope, if set, is the scope reported as granted instead of the one
	// requested (a user unticking a permission).
	Scope string

	mu        sync.Mutex
	codes     map[string]codeGrant
	access    map[string]time.Time // access token → expiry
	refresh   map[string]bool      // refresh token → still valid
	refreshes int
}

type codeGrant struct {
	redirect, challenge, scope string
	offline                    bool
}

// New starts a server of kind, closed when t ends.
func New(t testing.TB, kind string) *Server {
	s := &Server{Mux: http.NewServeMux(), Kind: kind, ClientID: "client-" + kind, ClientSecret: "secret-" + kind,
		Email: "owner@" + kind + ".test", DisplayName: "Owner", AccessTTL: time.Hour,
		codes: map[string]codeGrant{}, access: map[string]time.Time{}, refresh: map[string]bool{}}
	s.Mux.HandleFunc("GET /authorize", s.authorize)
	s.Mux.HandleFunc("POST /token", s.token)
	s.Mux.HandleFunc("GET /v1/userinfo", s.userinfo)
	s.Mux.HandleFunc("GET /me", s.userinfo)
	s.Server = httptest.NewServer(s.Mux)
	t.Cleanup(s.Close)
	return s
}

// Provider is the oauth configuration that talks to s; the send API base
// URL is the server's root.
func (s *Server) Provider(redirectURL string) oauth.Provider {
	p := oauth.Provider{Kind: s.Kind, ClientID: s.ClientID, ClientSecret: s.ClientSecret, RedirectURL: redirectURL,
		AuthURL: s.URL + "/authorize", TokenURL: s.URL + "/token", APIBaseURL: s.URL}
	p.UserInfoURL = s.URL + "/v1/userinfo"
	if s.Kind == oauth.KindMicrosoft {
		p.UserInfoURL = s.URL + "/me"
	}
	return p
}

// Grant issues a token pair as if the account had just been connected,
// for tests that skip the browser flow.
func (s *Server) Grant() *oauth2.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.newRefreshLocked()
	at, exp := s.newAccessLocked()
	return &oauth2.Token{AccessToken: at, TokenType: "Bearer", RefreshToken: rt, Expiry: exp}
}

// Revoke retires every refresh and access token, as a user removing the
// app from the account does.
func (s *Server) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.refresh {
		s.refresh[k] = false
	}
	clear(s.access)
}

// ExpireAccess retires every access token but keeps refresh tokens.
func (s *Server) ExpireAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

// Refreshes counts the refresh_token grants served.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// Authorized reports whether r carries a current bearer access token.
func (s *Server) Authorized(r *http.Request) bool {
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[at]
	return ok && time.Now().Before(exp)
}

// Unauthorized writes the API's 401 in the kind's error shape.
func (s *Server) Unauthorized(w http.ResponseWriter) {
	if s.Kind == oauth.KindMicrosoft {
		WriteJSON(w, 401, map[string]any{"error": map[string]any{"code": "InvalidAuthenticationToken",
			"message": "Access token has expired or is not yet valid."}})
		return
	}
	WriteJSON(w, 401, map[string]any{"error": map[string]any{"code": 401, "message": "Invalid Credentials",
		"status": "UNAUTHENTICATED", "errors": []any{map[string]any{"domain": "global", "reason": "authError",
			"message": "Invalid Credentials", "locationType": "header", "location": "Authorization"}}}})
}

// WriteJSON writes v as a JSON response with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// authorize stands for the consent screen: it approves at once and
// redirects back with a code, as the real endpoints do after consent.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	if q.Get("client_id") != s.ClientID || redirect == "" || q.Get("response_type") != "code" {
		http.Error(w, "invalid_request", http.StatusBadRequest)
		return
	}
	if q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256" {
		http.Error(w, "invalid_request: code_challenge_method", http.StatusBadRequest)
		return
	}
	scope := q.Get("scope")
	offline := strings.Contains(" "+scope+" ", " offline_access ") // Microsoft
	if s.Kind == oauth.KindGoogle {
		// Google issues a refresh token only for offline access, and
		// again for an account already connected only with consent.
		offline = q.Get("access_type") == "offline" && q.Get("prompt") == "consent"
	}
	code := randomToken("code")
	s.mu.Lock()
	s.codes[code] = codeGrant{redirect: redirect, challenge: q.Get("code_challenge"), scope: scope, offline: offline}
	s.mu.Unlock()
	u, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "invalid redirect_uri", http.StatusBadRequest)
		return
	}
	v := u.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token is the token endpoint (RFC 6749 §4.1.3, §6; RFC 7636).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, 400, "invalid_request", err.Error())
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) != 1 {
		tokenError(w, 401, "invalid_client", "The OAuth client was not found.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := map[string]any{"token_type": "Bearer"}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code")) // single use, even when it fails
		if !ok || g.redirect != r.PostForm.Get("redirect_uri") {
			tokenError(w, 400, "invalid_grant", "Malformed auth code.")
			return
		}
		if g.challenge != "" && !pkceOK(g.challenge, r.PostForm.Get("code_verifier")) {
			tokenError(w, 400, "invalid_grant", "Invalid code verifier.")
			return
		}
		if g.offline {
			resp["refresh_token"] = s.newRefreshLocked()
		}
		resp["scope"] = g.scope
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		if !s.refresh[rt] {
			tokenError(w, 400, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		s.refreshes++
		if s.RotateRefresh {
			s.refresh[rt] = false
			resp["refresh_token"] = s.newRefreshLocked()
		}
	default:
		tokenError(w, 400, "unsupported_grant_type", "")
		return
	}
	if s.Scope != "" {
		resp["scope"] = s.Scope
	}
	at, exp := s.newAccessLocked()
	resp["access_token"] = at
	resp["expires_in"] = int(time.Until(exp).Round(time.Second).Seconds())
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, 200, resp)
}

// userinfo answers Google's OpenID userinfo or Graph's /me, by kind.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	if !s.Authorized(r) {
		s.Unauthorized(w)
		return
	}
	if s.Kind == oauth.KindMicrosoft {
		// Personal accounts often have no "mail"; userPrincipalName is
		// then the address.
		WriteJSON(w, 200, map[string]any{"id": "0001", "displayName": s.DisplayName, "mail": nil,
			"userPrincipalName": s.Email})
		return
	}
	WriteJSON(w, 200, map[string]any{"sub": "1001", "email": s.Email, "email_verified": true, "name": s.DisplayName})
}

func (s *Server) newRefreshLocked() string {
	rt := randomToken("rt")
	s.refresh[rt] = true
	return rt
}

func (s *Server) newAccessLocked() (string, time.Time) {
	at := randomToken("at")
	exp := time.Now().Add(s.AccessTTL)
	s.access[at] = exp
	return at, exp
}

func pkceOK(challenge, verifier string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return verifier != "" && base64.RawURLEncoding.EncodeToString(sum[:]) == challenge
}

func tokenError(w http.ResponseWriter, code int, errCode, desc string) {
	WriteJSON(w, code, map[string]string{"error": errCode, "error_description": desc})
}

func randomToken(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + "." + base64.RawURLEncoding.EncodeToString(b)
}

// Message is a message as a fake send API received it.
type Message struct {
	Raw    []byte
	Header mail.Header
	Body   []byte // the bytes after the header's blank line, exactly
	// Recipients are the addresses of To, Cc and Bcc, lower-case: whom
	// Gmail and Graph deliver to.
	Recipients []string
}

// ParseMessage parses raw as the APIs do, failing where they would
// answer 400 (no parsable header, no recipient).
func ParseMessage(raw []byte) (*Message, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return nil, err
	}
	msg := &Message{Raw: raw, Header: m.Header, Body: body}
	for _, k := range []string{"To", "Cc", "Bcc"} {
		if m.Header.Get(k) == "" {
			continue
		}
		list, err := m.Header.AddressList(k)
		if err != nil {
			return nil, fmt.Errorf("invalid %s header: %w", k, err)
		}
		for _, a := range list {
			msg.Recipients = append(msg.Recipients, strings.ToLower(a.Address))
		}
	}
	if len(msg.Recipients) == 0 {
		return nil, errors.New("recipient address required")
	}
	return msg, nil
}

// Consent plays the browser: it opens authURL (which must point at s),
// lets the fake consent, and returns the code and state the redirect
// carries back to the callback.
func (s *Server) Consent(authURL string) (code, state string, err error) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(authURL)
	if err != nil {
		return "", "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", "", fmt.Errorf("authorize: HTTP %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", "", err
	}
	return loc.Query().Get("code"), loc.Query().Get("state"), nil
}
