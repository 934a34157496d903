package oauth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
)

// persisted records the tokens a source asked to persist, failing the
// first fail calls.
type persisted struct {
	mu   sync.Mutex
	toks []*oauth2.Token
	fail int
}

func (p *persisted) save(t *oauth2.Token) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return errors.New("disk full")
	}
	p.toks = append(p.toks, t)
	return nil
}

func (p *persisted) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.toks)
}

func (p *persisted) last() *oauth2.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.toks[len(p.toks)-1]
}

// expired is tok as the store would hold it an hour later: same refresh
// token, access token past its expiry.
func expired(tok *oauth2.Token) *oauth2.Token {
	return &oauth2.Token{AccessToken: "stale", RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
}

func TestTokenSource(t *testing.T) {
	tests := []struct {
		name string
		kind string
		// prepare returns the stored token the source starts with.
		prepare      func(*oauthtest.Server) *oauth2.Token
		failPersist  int
		wantErr      error
		wantRefresh  int
		wantPersists int
	}{
		{name: "valid token is reused", kind: oauth.KindGoogle,
			prepare: func(s *oauthtest.Server) *oauth2.Token { return s.Grant() }},
		{name: "expired token is refreshed and persisted", kind: oauth.KindGoogle,
			prepare:     func(s *oauthtest.Server) *oauth2.Token { return expired(s.Grant()) },
			wantRefresh: 1, wantPersists: 1},
		{name: "expiring within the early window is refreshed", kind: oauth.KindMicrosoft,
			prepare: func(s *oauthtest.Server) *oauth2.Token {
				tok := s.Grant()
				tok.Expiry = time.Now().Add(oauth.DefaultEarlyExpiry / 2)
				return tok
			}, wantRefresh: 1, wantPersists: 1},
		{name: "bare refresh token", kind: oauth.KindMicrosoft,
			prepare: func(s *oauthtest.Server) *oauth2.Token {
				return &oauth2.Token{RefreshToken: s.Grant().RefreshToken}
			}, wantRefresh: 1, wantPersists: 1},
		{name: "failed persist is retried", kind: oauth.KindGoogle,
			prepare:     func(s *oauthtest.Server) *oauth2.Token { return expired(s.Grant()) },
			failPersist: 1, wantRefresh: 1, wantPersists: 1},
		{name: "revoked grant", kind: oauth.KindGoogle,
			prepare: func(s *oauthtest.Server) *oauth2.Token {
				tok := expired(s.Grant())
				s.Revoke()
				return tok
			}, wantErr: oauth.ErrGrantRevoked},
		{name: "no refresh token", kind: oauth.KindGoogle,
			prepare: func(*oauthtest.Server) *oauth2.Token { return &oauth2.Token{AccessToken: "x", Expiry: time.Unix(1, 0)} },
			wantErr: oauth.ErrGrantRevoked},
		{name: "client secret rotated away", kind: oauth.KindMicrosoft,
			prepare: func(s *oauthtest.Server) *oauth2.Token {
				tok := expired(s.Grant())
				s.ClientSecret = "rotated"
				return tok
			}, wantErr: oauth.ErrClientRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := oauthtest.New(t, tt.kind)
			c := connector(t, srv, nil)
			stored := tt.prepare(srv)
			p := &persisted{fail: tt.failPersist}
			ts := c.TokenSource(context.Background(), tt.kind, stored, p.save)
			for i := 0; i < 3; i++ {
				tok, err := ts.Token()
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Token: %v, want %v", err, tt.wantErr)
					}
					var re *oauth2.RetrieveError
					if tt.wantErr == oauth.ErrGrantRevoked && stored.RefreshToken != "" && !errors.As(err, &re) {
						t.Fatalf("error %v does not carry the token endpoint's answer", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Token #%d: %v", i, err)
				}
				if !tok.Valid() || tok.RefreshToken == "" {
					t.Fatalf("Token #%d: %+v", i, tok)
				}
			}
			if got := srv.Refreshes(); got != tt.wantRefresh {
				t.Errorf("%d refreshes, want %d", got, tt.wantRefresh)
			}
			if got := p.count(); got != tt.wantPersists {
				t.Errorf("%d persists, want %d", got, tt.wantPersists)
			}
		})
	}
}

// Microsoft rotates refresh tokens: the source must persist the new one
// and use it for the next refresh, since the old one is retired.
func TestTokenSourceRotation(t *testing.T) {
	srv := oauthtest.New(t, oauth.KindMicrosoft)
	srv.RotateRefresh = true
	c := connector(t, srv, nil)
	first := srv.Grant()
	p := &persisted{}
	ts := c.TokenSource(context.Background(), oauth.KindMicrosoft, expired(first), p.save).(*oauth.Source)
	for i := 0; i < 3; i++ {
		tok, err := ts.Token()
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if got := p.last(); got.RefreshToken != tok.RefreshToken || got.RefreshToken == first.RefreshToken {
			t.Fatalf("round %d: persisted refresh token %q, in use %q", i, got.RefreshToken, tok.RefreshToken)
		}
		// As after a 401: the next Token must refresh.
		ts.Invalidate(tok)
	}
	if srv.Refreshes() != 3 || p.count() != 3 {
		t.Fatalf("%d refreshes, %d persists, want 3 and 3", srv.Refreshes(), p.count())
	}
}

// Concurrent senders finding the token expired cause one refresh, and
// concurrent 401s on the same token one more.
func TestTokenSourceConcurrent(t *testing.T) {
	srv := oauthtest.New(t, oauth.KindGoogle)
	c := connector(t, srv, nil)
	ts := c.TokenSource(context.Background(), oauth.KindGoogle, expired(srv.Grant()), nil).(*oauth.Source)
	var wg sync.WaitGroup
	toks := make([]*oauth2.Token, 16)
	for i := range toks {
		wg.Go(func() {
			tok, err := ts.Token()
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok
		})
	}
	wg.Wait()
	if srv.Refreshes() != 1 {
		t.Fatalf("%d refreshes, want 1", srv.Refreshes())
	}
	for _, tok := range toks {
		ts.Invalidate(tok)
	}
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	ts.Invalidate(toks[0]) // already replaced: ignored
	if _, err := ts.Token(); err != nil || srv.Refreshes() != 2 {
		t.Fatalf("%d refreshes (err %v), want 2", srv.Refreshes(), err)
	}
}
