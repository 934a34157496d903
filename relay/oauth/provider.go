// Package oauth is the OAuth 2.0 side of the Gmail and Outlook / Microsoft
// 365 connected accounts (SPEC §7): the authorization-code connect flow
// with single-use states, reading the connected account's address, and the
// token source the providers send with, which refreshes access tokens
// before they expire and hands every new token to the caller to re-seal.
//
// The package runs no HTTP server of its own. The admin API calls Start
// from POST /api/v1/providers/oauth/{google|microsoft}/start and Finish
// from GET /oauth/callback; cmd builds each provider's token source with
// TokenSource. It imports nothing of the project, so admin can use it
// without pulling in the relay.
package oauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Provider kinds, as they appear in the start URL.
const (
	KindGoogle    = "google"
	KindMicrosoft = "microsoft"
)

// ProviderType is the stored provider type (SPEC §2) an account of kind
// creates, or "" for an unknown kind.
func ProviderType(kind string) string {
	switch kind {
	case KindGoogle:
		return "gmail_api"
	case KindMicrosoft:
		return "outlook_api"
	}
	return ""
}

// KindOf is the kind of the stored provider type typ ("gmail_api" →
// KindGoogle, "outlook_api" → KindMicrosoft), or "".
func KindOf(typ string) string {
	switch typ {
	case "gmail_api":
		return KindGoogle
	case "outlook_api":
		return KindMicrosoft
	}
	return ""
}

// Default endpoints of the real services.
const (
	GoogleAuthURL     = "https://accounts.google.com/o/oauth2/v2/auth"
	GoogleTokenURL    = "https://oauth2.googleapis.com/token"
	GoogleUserInfoURL = "https://openidconnect.googleapis.com/v1/userinfo"
	GoogleAPIBaseURL  = "https://gmail.googleapis.com"

	// The "common" tenant accepts work, school and personal accounts;
	// a single-tenant app overrides AuthURL and TokenURL with its tenant.
	MicrosoftAuthURL     = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
	MicrosoftTokenURL    = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
	MicrosoftUserInfoURL = "https://graph.microsoft.com/v1.0/me"
	MicrosoftAPIBaseURL  = "https://graph.microsoft.com/v1.0"
)

// Default scopes. Google's gmail.send allows sending only, not reading;
// openid+email lets the userinfo endpoint return the address. Microsoft
// needs offline_access for a refresh token and User.Read for /me.
var (
	GoogleScopes    = []string{"https://www.googleapis.com/auth/gmail.send", "openid", "email"}
	MicrosoftScopes = []string{"https://graph.microsoft.com/Mail.Send", "offline_access", "openid", "email", "User.Read"}
)

// Provider is the operator's OAuth client for one kind ([oauth.google] or
// [oauth.microsoft] in the config). Empty URLs and Scopes take the
// defaults of the kind; tests point every URL at httptest servers.
type Provider struct {
	Kind         string // KindGoogle or KindMicrosoft
	ClientID     string
	ClientSecret string
	// RedirectURL is where the browser comes back: the daemon's public
	// GET /oauth/callback URL, registered with Google or Microsoft.
	RedirectURL string

	AuthURL     string // authorization endpoint (browser)
	TokenURL    string // token endpoint (code exchange, refresh)
	UserInfoURL string // Google: OpenID userinfo; Microsoft: Graph /me
	// APIBaseURL is where the provider sends mail: the Gmail API root or
	// the Graph v1.0 root. This package does not use it; cmd passes it on
	// to relay/gmail or relay/outlook.
	APIBaseURL string
	// Scopes requested; the first must be the send permission, which
	// Exchange checks the user actually granted.
	Scopes []string
}

// withDefaults returns p with empty fields filled from its kind's
// defaults, checked.
func (p Provider) withDefaults() (Provider, error) {
	def := func(v *string, d string) {
		if *v = strings.TrimSpace(*v); *v == "" {
			*v = d
		}
	}
	switch p.Kind {
	case KindGoogle:
		def(&p.AuthURL, GoogleAuthURL)
		def(&p.TokenURL, GoogleTokenURL)
		def(&p.UserInfoURL, GoogleUserInfoURL)
		def(&p.APIBaseURL, GoogleAPIBaseURL)
		if len(p.Scopes) == 0 {
			p.Scopes = append([]string(nil), GoogleScopes...)
		}
	case KindMicrosoft:
		def(&p.AuthURL, MicrosoftAuthURL)
		def(&p.TokenURL, MicrosoftTokenURL)
		def(&p.UserInfoURL, MicrosoftUserInfoURL)
		def(&p.APIBaseURL, MicrosoftAPIBaseURL)
		if len(p.Scopes) == 0 {
			p.Scopes = append([]string(nil), MicrosoftScopes...)
		}
	default:
		return p, fmt.Errorf("oauth: unknown provider kind %q (want %s or %s)", p.Kind, KindGoogle, KindMicrosoft)
	}
	p.APIBaseURL = strings.TrimRight(p.APIBaseURL, "/")
	if p.ClientID == "" || p.ClientSecret == "" {
		return p, fmt.Errorf("oauth %s: client_id and client_secret are required", p.Kind)
	}
	if p.RedirectURL == "" {
		return p, fmt.Errorf("oauth %s: redirect_url is required", p.Kind)
	}
	for _, u := range []struct{ name, v string }{
		{"redirect_url", p.RedirectURL}, {"auth_url", p.AuthURL}, {"token_url", p.TokenURL},
		{"userinfo_url", p.UserInfoURL}, {"api_base_url", p.APIBaseURL},
	} {
		if err := checkURL(u.v); err != nil {
			return p, fmt.Errorf("oauth %s: %s: %w", p.Kind, u.name, err)
		}
	}
	return p, nil
}

// checkURL accepts absolute http(s) URLs. Plain http is allowed because
// tests and local fakes use it; the defaults are all https.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	return nil
}
