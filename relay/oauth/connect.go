package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Defaults of Options.
const (
	DefaultHTTPTimeout = 30 * time.Second
	// DefaultEarlyExpiry refreshes an access token this long before it
	// expires, so that a token handed to a send does not expire while the
	// message is uploading.
	DefaultEarlyExpiry = 2 * time.Minute
)

// Errors of the connect flow and of token sources.
var (
	// ErrNotConfigured is a kind the operator has no OAuth client for.
	ErrNotConfigured = errors.New("oauth: provider kind not configured")
	// ErrNoRefreshToken is an exchange that returned no refresh token, so
	// the account could not be used once the access token expires.
	ErrNoRefreshToken = errors.New("oauth: no refresh token granted")
	// ErrScopeNotGranted is a consent where the user unticked the send
	// permission (Google's consent screen allows that).
	ErrScopeNotGranted = errors.New("oauth: send permission not granted")
)

// Options tune a Connector. Zero values take the defaults.
type Options struct {
	// HTTPClient makes the token and userinfo requests; default a client
	// with DefaultHTTPTimeout.
	HTTPClient *http.Client
	// EarlyExpiry is how long before expiry token sources refresh.
	EarlyExpiry time.Duration
	// StateTTL is the lifetime of a connect flow; default StateTTL.
	StateTTL time.Duration
	// Now is the clock for states and token expiry (a test seam).
	Now func() time.Time
	// States keeps the pending flows; nil: an in-memory States (one
	// node). Cluster mode passes a store every node shares, since the
	// provider's redirect may reach another node than the start.
	States StateStore
}

// Connector runs the connect flow and builds token sources for the kinds
// the operator configured. Safe for concurrent use.
type Connector struct {
	kinds  map[string]kindConf
	client *http.Client
	early  time.Duration
	now    func() time.Time
	states StateStore
}

type kindConf struct {
	prov Provider
	conf *oauth2.Config
}

// Grant is a completed connect flow: what the callback stores as a new
// gmail_api / outlook_api provider.
type Grant struct {
	TeamID string
	Kind   string
	// Email is the authorised address (oauth_email): the account sends
	// only as this address.
	Email string
	// Token carries the refresh token to seal and store; its access
	// token may be stored too, to save a refresh at first send.
	Token *oauth2.Token
}

// New checks providers (at most one per kind; empty URLs take the
// defaults) and returns a Connector for them.
func New(providers []Provider, opts Options) (*Connector, error) {
	c := &Connector{kinds: map[string]kindConf{}, client: opts.HTTPClient, early: opts.EarlyExpiry, now: opts.Now}
	if c.client == nil {
		c.client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if c.early <= 0 {
		c.early = DefaultEarlyExpiry
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.states = opts.States
	if c.states == nil {
		c.states = NewStates(opts.StateTTL, c.now)
	}
	for _, p := range providers {
		p, err := p.withDefaults()
		if err != nil {
			return nil, err
		}
		if _, dup := c.kinds[p.Kind]; dup {
			return nil, fmt.Errorf("oauth: %s configured twice", p.Kind)
		}
		c.kinds[p.Kind] = kindConf{prov: p, conf: &oauth2.Config{
			ClientID: p.ClientID, ClientSecret: p.ClientSecret, RedirectURL: p.RedirectURL, Scopes: p.Scopes,
			// Both services take the secret in the form. Fixing the style
			// avoids oauth2's auto-detection, which on any error (such as
			// a revoked grant) repeats the request the other way.
			Endpoint: oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		}}
	}
	return c, nil
}

// Provider returns the checked configuration of kind (with defaults
// filled in, e.g. APIBaseURL for the sending provider).
func (c *Connector) Provider(kind string) (Provider, bool) {
	k, ok := c.kinds[kind]
	return k.prov, ok
}

// States is the connector's store of pending flows.
func (c *Connector) States() StateStore { return c.states }

func (c *Connector) kind(kind string) (kindConf, error) {
	k, ok := c.kinds[kind]
	if !ok {
		return k, fmt.Errorf("%w: %q", ErrNotConfigured, kind)
	}
	return k, nil
}

// ctx carries the connector's HTTP client to golang.org/x/oauth2.
func (c *Connector) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.client)
}

// AuthCodeURL is the authorization URL for state. Google gets
// access_type=offline and prompt=consent: without consent Google issues a
// refresh token only the first time an account authorises the app.
func (c *Connector) AuthCodeURL(kind, state string, opts ...oauth2.AuthCodeOption) (string, error) {
	k, err := c.kind(kind)
	if err != nil {
		return "", err
	}
	switch kind {
	case KindGoogle:
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.ApprovalForce)
	case KindMicrosoft:
		// Let people signed in to several accounts pick the mailbox.
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "select_account"))
	}
	return k.conf.AuthCodeURL(state, opts...), nil
}

// Start begins a connect flow for teamID: it issues a state (with a PKCE
// verifier) and returns the URL to send the user to, for
// POST /providers/oauth/{kind}/start → {"authorization_url","state"}.
func (c *Connector) Start(teamID, kind string) (authURL string, st State, err error) {
	if _, err := c.kind(kind); err != nil {
		return "", State{}, err
	}
	if st, err = c.states.Issue(teamID, kind); err != nil {
		return "", State{}, err
	}
	authURL, err = c.AuthCodeURL(kind, st.Value, oauth2.S256ChallengeOption(st.Verifier))
	return authURL, st, err
}

// Finish completes the flow of state with the code from the callback:
// the state is consumed (ErrStateInvalid if unknown, used or expired),
// the code exchanged and the account's address read.
func (c *Connector) Finish(ctx context.Context, state, code string) (*Grant, error) {
	st, err := c.states.Consume(state)
	if err != nil {
		return nil, err
	}
	tok, email, err := c.Exchange(ctx, st.Kind, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return nil, err
	}
	return &Grant{TeamID: st.TeamID, Kind: st.Kind, Email: email, Token: tok}, nil
}

// Exchange trades an authorization code for a token and reads the
// account's address with it. It fails with ErrNoRefreshToken or
// ErrScopeNotGranted when the grant would not let the daemon send later.
func (c *Connector) Exchange(ctx context.Context, kind, code string, opts ...oauth2.AuthCodeOption) (*oauth2.Token, string, error) {
	k, err := c.kind(kind)
	if err != nil {
		return nil, "", err
	}
	if code == "" {
		return nil, "", fmt.Errorf("oauth %s: empty authorization code", kind)
	}
	tok, err := k.conf.Exchange(c.ctx(ctx), code, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("oauth %s: code exchange: %w", kind, err)
	}
	if tok.RefreshToken == "" {
		return nil, "", fmt.Errorf("oauth %s: %w", kind, ErrNoRefreshToken)
	}
	if granted, ok := tok.Extra("scope").(string); ok && !hasScope(granted, k.prov.Scopes[0]) {
		return nil, "", fmt.Errorf("oauth %s: %w (granted %q)", kind, ErrScopeNotGranted, granted)
	}
	email, err := c.userEmail(ctx, k.prov, tok)
	if err != nil {
		return nil, "", err
	}
	return tok, email, nil
}

// hasScope reports whether the space-separated granted list holds want.
// Microsoft reports Graph scopes either bare ("Mail.Send") or with their
// resource prefix, so the last path segment is compared too.
func hasScope(granted, want string) bool {
	last := func(s string) string { return s[strings.LastIndexByte(s, '/')+1:] }
	for _, g := range strings.Fields(granted) {
		if strings.EqualFold(g, want) || strings.EqualFold(last(g), last(want)) {
			return true
		}
	}
	return false
}

// userEmail reads the account address from the userinfo endpoint: Google
// OpenID userinfo's "email", or Graph /me's "mail", falling back to
// "userPrincipalName" (accounts without an Exchange mail attribute).
func (c *Connector) userEmail(ctx context.Context, p Provider, tok *oauth2.Token) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.UserInfoURL, nil)
	if err != nil {
		return "", err
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("oauth %s: userinfo: %w", p.Kind, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("oauth %s: userinfo: %w", p.Kind, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("oauth %s: userinfo: HTTP %d: %.200s", p.Kind, resp.StatusCode, body)
	}
	var info struct {
		Email         string `json:"email"`
		EmailVerified *bool  `json:"email_verified"`
		Mail          string `json:"mail"`
		UPN           string `json:"userPrincipalName"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("oauth %s: userinfo: %w", p.Kind, err)
	}
	addr := info.Email
	if p.Kind == KindMicrosoft {
		addr = info.Mail
		if addr == "" {
			addr = info.UPN
		}
	} else if info.EmailVerified != nil && !*info.EmailVerified {
		return "", fmt.Errorf("oauth %s: account address %q is not verified", p.Kind, info.Email)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Name != "" || a.Address != strings.TrimSpace(addr) {
		return "", fmt.Errorf("oauth %s: userinfo returned no usable address (%q)", p.Kind, addr)
	}
	return a.Address, nil
}
