package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Errors of token refresh. Both wrap the *oauth2.RetrieveError, so the
// token endpoint's description stays available with errors.As.
var (
	// ErrGrantRevoked means the refresh token no longer works: the user
	// revoked access, changed the password, the token expired, or it was
	// never there. Only connecting the account again helps, so the relay
	// turns the provider "pending" (SPEC §7).
	ErrGrantRevoked = errors.New("oauth: grant revoked or expired (invalid_grant)")
	// ErrClientRejected means the token endpoint refused the operator's
	// OAuth client itself (invalid_client, unauthorized_client): a
	// configuration fault no reconnect fixes.
	ErrClientRejected = errors.New("oauth: client rejected by the token endpoint")
)

// refreshTimeout bounds one refresh when the connector's HTTP client has
// no timeout of its own.
const refreshTimeout = 30 * time.Second

// Source is the token source of one connected account. It hands out the
// current access token until EarlyExpiry before it expires, then refreshes
// it with the refresh token (one refresh at a time; concurrent callers
// wait for it), and passes every token it has not yet persisted to the
// persist callback. Safe for concurrent use.
type Source struct {
	c       *Connector
	k       kindConf
	kindErr error
	ctx     context.Context
	persist func(*oauth2.Token) error

	mu    sync.Mutex
	tok   *oauth2.Token // current token; nil or expired means refresh
	saved *oauth2.Token // the last token persist accepted
}

var _ oauth2.TokenSource = (*Source)(nil)

// TokenSource returns the token source of an account of kind whose stored
// token is tok (a bare refresh token is enough: the first use refreshes).
// ctx is used for refreshes for the lifetime of the source, so it must be
// long-lived (context.Background or the daemon's), not a request's.
//
// persist, if not nil, is called with each new token after a refresh:
// the caller re-seals it into the store, because Microsoft rotates the
// refresh token on every refresh. When persist fails the token is still
// used and persist is tried again on the next call, so a failed write
// costs nothing but a retry. persist runs under the source's lock, so it
// must not call the source's Token.
//
// An unknown kind yields a source whose Token always fails with
// ErrNotConfigured. The result is a *Source, which also has Invalidate.
func (c *Connector) TokenSource(ctx context.Context, kind string, tok *oauth2.Token, persist func(*oauth2.Token) error) oauth2.TokenSource {
	k, err := c.kind(kind)
	s := &Source{c: c, k: k, kindErr: err, ctx: ctx, persist: persist}
	if tok != nil {
		cp := *tok
		s.tok, s.saved = &cp, &cp
	}
	return s
}

// Token returns a valid access token, refreshing it when needed. A
// refresh refused with invalid_grant fails with an error wrapping
// ErrGrantRevoked; an invalid_client with ErrClientRejected; anything
// else (network, 5xx) is returned as it came and is worth retrying.
func (s *Source) Token() (*oauth2.Token, error) {
	if s.kindErr != nil {
		return nil, s.kindErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.valid() {
		t, err := s.refresh()
		if err != nil {
			return nil, err
		}
		s.tok = t
	}
	if s.persist != nil && !sameToken(s.tok, s.saved) {
		cp := *s.tok
		if err := s.persist(&cp); err == nil {
			s.saved = s.tok
		}
	}
	cp := *s.tok
	return &cp, nil
}

// Invalidate drops stale if it is still the current access token, so the
// next Token refreshes. Providers call it when the API answers 401 to a
// token the source thought valid (revoked early, password changed); a
// stale token that was already replaced is ignored, so concurrent senders
// hitting the same 401 cause one refresh, not one each.
func (s *Source) Invalidate(stale *oauth2.Token) {
	if stale == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == stale.AccessToken {
		cp := *s.tok
		cp.AccessToken, cp.Expiry = "", time.Time{}
		s.tok = &cp
	}
}

// valid reports whether the current token can be handed out. A token
// without Expiry never expires by our clock (the API's 401 will tell).
func (s *Source) valid() bool {
	t := s.tok
	if t == nil || t.AccessToken == "" {
		return false
	}
	return t.Expiry.IsZero() || s.c.now().Add(s.c.early).Before(t.Expiry)
}

// refresh runs the refresh_token grant. It builds a one-shot
// golang.org/x/oauth2 source from the current refresh token rather than
// keeping oauth2's own refresher, so that Invalidate can force a refresh
// and the refresh token in use is always the one last issued.
func (s *Source) refresh() (*oauth2.Token, error) {
	if s.tok == nil || s.tok.RefreshToken == "" {
		return nil, fmt.Errorf("oauth %s: %w: no refresh token stored", s.k.prov.Kind, ErrGrantRevoked)
	}
	ctx := s.c.ctx(s.ctx)
	if s.c.client.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, refreshTimeout)
		defer cancel()
	}
	// An expired token makes the oauth2 source refresh at once.
	old := &oauth2.Token{RefreshToken: s.tok.RefreshToken, Expiry: time.Unix(1, 0)}
	t, err := s.k.conf.TokenSource(ctx, old).Token()
	if err != nil {
		return nil, tokenError(s.k.prov.Kind, err)
	}
	return t, nil
}

// tokenError wraps a refresh failure in the sentinel it stands for.
func tokenError(kind string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("oauth %s: refresh: %w", kind, err)
	}
	switch re.ErrorCode {
	case "invalid_grant":
		return fmt.Errorf("oauth %s: %w: %w", kind, ErrGrantRevoked, err)
	case "invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope":
		return fmt.Errorf("oauth %s: %w: %w", kind, ErrClientRejected, err)
	}
	if re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized {
		// RFC 6749 §5.2: a 401 from the token endpoint is client
		// authentication failing, even without an error code.
		return fmt.Errorf("oauth %s: %w: %w", kind, ErrClientRejected, err)
	}
	return fmt.Errorf("oauth %s: refresh: %w", kind, err)
}

func sameToken(a, b *oauth2.Token) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken && a.Expiry.Equal(b.Expiry)
}
