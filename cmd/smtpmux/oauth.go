package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/gmail"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/outlook"
	"github.com/smtpmux/smtpmux/store"
)

// oauthClientConfig is one [oauth.google] / [oauth.microsoft] table.
type oauthClientConfig struct {
	ClientID     string `toml:"client_id"`
	ClientSecret string `toml:"client_secret"`
	RedirectURL  string `toml:"redirect_url"`
	AuthURL      string `toml:"auth_url"`
	TokenURL     string `toml:"token_url"`
	UserInfoURL  string `toml:"userinfo_url"`
	APIBaseURL   string `toml:"api_base_url"`
}

// newConnector builds the OAuth connect flow for the kinds the operator
// configured; nil when none is. states keeps the pending flows (nil: in
// memory; cluster mode: etcd, so the callback may reach any node).
func newConnector(cfg *config, states oauth.StateStore) (*oauth.Connector, error) {
	var ps []oauth.Provider
	for kind, c := range map[string]oauthClientConfig{oauth.KindGoogle: cfg.file.OAuth.Google, oauth.KindMicrosoft: cfg.file.OAuth.Microsoft} {
		if c.ClientID == "" {
			continue
		}
		ps = append(ps, oauth.Provider{Kind: kind, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
			RedirectURL: c.RedirectURL, AuthURL: c.AuthURL, TokenURL: c.TokenURL, UserInfoURL: c.UserInfoURL,
			APIBaseURL: c.APIBaseURL})
	}
	if len(ps) == 0 {
		return nil, nil
	}
	conn, err := oauth.New(ps, oauth.Options{States: states})
	if err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	return conn, nil
}

// registerOAuthProviders installs the Gmail and Outlook factories. Each
// provider gets a token source that refreshes before expiry and stores
// every new token sealed.
func registerOAuthProviders(reg *relay.Registry, conn *oauth.Connector, st *store.Store, sealer *store.Sealer) {
	if conn == nil {
		return
	}
	build := func(p *store.Provider, secret string) (oauth2.TokenSource, string, error) {
		kind := oauth.KindOf(p.Type)
		def, ok := conn.Provider(kind)
		if !ok {
			return nil, "", fmt.Errorf("[oauth.%s] is not configured", kind)
		}
		var tok oauth2.Token
		if err := json.Unmarshal([]byte(secret), &tok); err != nil {
			return nil, "", fmt.Errorf("stored OAuth token unreadable: %w", err)
		}
		id := p.ID
		persist := func(t *oauth2.Token) error {
			b, err := json.Marshal(t)
			if err != nil {
				return err
			}
			return st.SetProviderToken(id, sealer.Seal(string(b)))
		}
		return conn.TokenSource(context.Background(), kind, &tok, persist), def.APIBaseURL, nil
	}
	reg.Register(store.TypeGmail, func(p *store.Provider, secret string) (relay.Provider, error) {
		ts, base, err := build(p, secret)
		if err != nil {
			return nil, err
		}
		return gmail.New(gmail.Config{APIBaseURL: base, TokenSource: ts, Email: p.OAuthEmail})
	})
	reg.Register(store.TypeOutlook, func(p *store.Provider, secret string) (relay.Provider, error) {
		ts, base, err := build(p, secret)
		if err != nil {
			return nil, err
		}
		return outlook.New(outlook.Config{APIBaseURL: base, TokenSource: ts, Email: p.OAuthEmail})
	})
}

// oauthAPI adapts the Connector to the API's OAuthConnector.
type oauthAPI struct{ conn *oauth.Connector }

func (a oauthAPI) Start(teamID, kind string) (string, string, error) {
	u, st, err := a.conn.Start(teamID, kind)
	if errors.Is(err, oauth.ErrNotConfigured) {
		return "", "", admin.ErrOAuthNotConfigured
	}
	return u, st.Value, err
}

func (a oauthAPI) Finish(ctx context.Context, state, code string) (*admin.OAuthGrant, error) {
	if code == "" {
		a.conn.States().Consume(state) // the user declined: the state is spent
		return nil, admin.ErrOAuthDeclined
	}
	g, err := a.conn.Finish(ctx, state, code)
	switch {
	case errors.Is(err, oauth.ErrStateInvalid):
		return nil, admin.ErrOAuthState
	case errors.Is(err, store.ErrUnavailable):
		return nil, err // cluster mode, etcd away: the API's 503, the state kept
	case errors.Is(err, oauth.ErrNoRefreshToken), errors.Is(err, oauth.ErrScopeNotGranted):
		return nil, fmt.Errorf("%w: %v", admin.ErrOAuthDeclined, err)
	case err != nil:
		return nil, err
	}
	tok, err := json.Marshal(g.Token)
	if err != nil {
		return nil, err
	}
	return &admin.OAuthGrant{TeamID: g.TeamID, ProviderType: oauth.ProviderType(g.Kind), Email: g.Email, TokenJSON: tok}, nil
}

// oauthOption is the API's connector, or nil (an untyped nil: a nil
// *Connector inside the interface would look configured).
func oauthOption(conn *oauth.Connector) admin.OAuthConnector {
	if conn == nil {
		return nil
	}
	return oauthAPI{conn}
}
