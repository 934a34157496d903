package oauth_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
)

const redirect = "https://mux.example/oauth/callback"

// connector is a Connector for the fake server srv, with a clock tests
// can move.
func connector(t *testing.T, srv *oauthtest.Server, clock *fakeClock) *oauth.Connector {
	t.Helper()
	opts := oauth.Options{HTTPClient: srv.Client()}
	if clock != nil {
		opts.Now = clock.Now
	}
	c, err := oauth.New([]oauth.Provider{srv.Provider(redirect)}, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func TestConnectFlow(t *testing.T) {
	for _, kind := range []string{oauth.KindGoogle, oauth.KindMicrosoft} {
		t.Run(kind, func(t *testing.T) {
			srv := oauthtest.New(t, kind)
			c := connector(t, srv, nil)
			authURL, st, err := c.Start("team1", kind)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			u, _ := url.Parse(authURL)
			q := u.Query()
			if q.Get("state") != st.Value || q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" {
				t.Fatalf("authorization URL lacks state or PKCE: %s", authURL)
			}
			if kind == oauth.KindGoogle && (q.Get("access_type") != "offline" || q.Get("prompt") != "consent") {
				t.Fatalf("Google URL lacks offline consent: %s", authURL)
			}
			code, state, err := srv.Consent(authURL)
			if err != nil || state != st.Value {
				t.Fatalf("consent: state %q, %v", state, err)
			}
			g, err := c.Finish(context.Background(), state, code)
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if g.TeamID != "team1" || g.Kind != kind || g.Email != srv.Email || g.Token.RefreshToken == "" {
				t.Fatalf("grant %+v", g)
			}
			// The state is single-use.
			if _, err := c.Finish(context.Background(), state, code); !errors.Is(err, oauth.ErrStateInvalid) {
				t.Fatalf("second Finish: %v, want ErrStateInvalid", err)
			}
		})
	}
}

func TestExchangeFailures(t *testing.T) {
	tests := []struct {
		name  string
		kind  string
		setup func(*oauthtest.Server, *oauth.Provider)
		// code replaces the real code when set
		code string
		want error
	}{
		{name: "scope unticked", kind: oauth.KindGoogle,
			setup: func(s *oauthtest.Server, _ *oauth.Provider) { s.Scope = "openid email" }, want: oauth.ErrScopeNotGranted},
		{name: "no offline_access", kind: oauth.KindMicrosoft,
			setup: func(_ *oauthtest.Server, p *oauth.Provider) {
				p.Scopes = []string{"https://graph.microsoft.com/Mail.Send", "User.Read"}
			}, want: oauth.ErrNoRefreshToken},
		{name: "bad code", kind: oauth.KindGoogle, code: "forged"},
		{name: "bad secret", kind: oauth.KindMicrosoft,
			setup: func(_ *oauthtest.Server, p *oauth.Provider) { p.ClientSecret = "wrong" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := oauthtest.New(t, tt.kind)
			p := srv.Provider(redirect)
			if tt.setup != nil {
				tt.setup(srv, &p)
			}
			c, err := oauth.New([]oauth.Provider{p}, oauth.Options{HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			authURL, _, err := c.Start("t", tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			code, state, err := srv.Consent(authURL)
			if err != nil {
				t.Fatal(err)
			}
			if tt.code != "" {
				code = tt.code
			}
			_, err = c.Finish(context.Background(), state, code)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Finish: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStates(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := oauth.NewStates(0, clock.Now)
	st, err := s.Issue("t1", oauth.KindGoogle)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Value) < 22 || strings.ContainsAny(st.Value, "+/=") {
		t.Fatalf("state %q is short or not URL-safe", st.Value)
	}
	clock.t = clock.t.Add(oauth.StateTTL)
	if _, err := s.Consume(st.Value); !errors.Is(err, oauth.ErrStateInvalid) {
		t.Fatalf("expired state consumed: %v", err)
	}
	// One team cannot crowd out another: its oldest flow goes instead.
	var first string
	for i := 0; i < oauth.MaxStatesPerTeam+5; i++ {
		clock.t = clock.t.Add(time.Millisecond)
		st, err := s.Issue("greedy", oauth.KindMicrosoft)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = st.Value
		}
	}
	if s.Len() != oauth.MaxStatesPerTeam {
		t.Fatalf("%d states held, want %d", s.Len(), oauth.MaxStatesPerTeam)
	}
	if _, err := s.Consume(first); !errors.Is(err, oauth.ErrStateInvalid) {
		t.Fatalf("oldest flow of a full team still valid: %v", err)
	}
	other, _ := s.Issue("t2", oauth.KindGoogle)
	if got, err := s.Consume(other.Value); err != nil || got.TeamID != "t2" || got.Verifier == "" {
		t.Fatalf("Consume: %+v %v", got, err)
	}
}

func TestNewValidates(t *testing.T) {
	ok := oauth.Provider{Kind: oauth.KindGoogle, ClientID: "id", ClientSecret: "s", RedirectURL: redirect}
	tests := []struct {
		name string
		ps   []oauth.Provider
	}{
		{"unknown kind", []oauth.Provider{{Kind: "yahoo", ClientID: "id", ClientSecret: "s", RedirectURL: redirect}}},
		{"no secret", []oauth.Provider{{Kind: oauth.KindGoogle, ClientID: "id", RedirectURL: redirect}}},
		{"no redirect", []oauth.Provider{{Kind: oauth.KindMicrosoft, ClientID: "id", ClientSecret: "s"}}},
		{"relative url", []oauth.Provider{{Kind: oauth.KindGoogle, ClientID: "id", ClientSecret: "s", RedirectURL: redirect, TokenURL: "/token"}}},
		{"twice", []oauth.Provider{ok, ok}},
	}
	for _, tt := range tests {
		if _, err := oauth.New(tt.ps, oauth.Options{}); err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, tt.ps)
		}
	}
	for _, k := range []string{oauth.KindGoogle, oauth.KindMicrosoft} {
		if oauth.KindOf(oauth.ProviderType(k)) != k {
			t.Errorf("kind %s does not round-trip through its provider type", k)
		}
	}
	c, err := oauth.New([]oauth.Provider{ok}, oauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Provider(oauth.KindGoogle)
	if p.TokenURL != oauth.GoogleTokenURL || p.APIBaseURL != oauth.GoogleAPIBaseURL || len(p.Scopes) != 3 {
		t.Fatalf("defaults not applied: %+v", p)
	}
	if _, _, err := c.Start("t", oauth.KindMicrosoft); !errors.Is(err, oauth.ErrNotConfigured) {
		t.Fatalf("Start of an unconfigured kind: %v", err)
	}
	if _, err := c.TokenSource(context.Background(), "yahoo", &oauth2.Token{}, nil).Token(); !errors.Is(err, oauth.ErrNotConfigured) {
		t.Fatalf("TokenSource of an unknown kind: %v", err)
	}
}
