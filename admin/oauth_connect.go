package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// OAuthConnector runs the Gmail / Microsoft 365 connect flow (SPEC §7) for
// the API; cmd implements it with relay/oauth.
type OAuthConnector interface {
	// Start begins a flow for the team; kind is "google" or "microsoft".
	// ErrOAuthNotConfigured when the operator set no client for kind.
	Start(teamID, kind string) (authURL, state string, err error)
	// Finish consumes the state and exchanges the code (an empty code
	// only consumes the state, for a user who declined).
	Finish(ctx context.Context, state, code string) (*OAuthGrant, error)
}

// OAuthGrant is a completed connect flow.
type OAuthGrant struct {
	TeamID       string
	ProviderType string // gmail_api or outlook_api
	Email        string // the authorised address
	TokenJSON    []byte // the OAuth token (refresh token included), to seal
}

// Errors an OAuthConnector returns that the API maps to its own codes.
var (
	ErrOAuthNotConfigured = errors.New("oauth kind not configured")
	ErrOAuthState         = errors.New("oauth state invalid, used or expired")
	ErrOAuthDeclined      = errors.New("oauth grant incomplete")
)

// oauthFlow is the connect flow's two ends: start, a team's route, and
// callback, the public page the user's browser comes back to, which no
// API key authenticates (the single-use state does). It is its own type
// so that the public end's reach is visible: the connector, and through
// save the one provider write a grant may cause.
type oauthFlow struct {
	conn OAuthConnector // nil: not configured
	log  *slog.Logger
	// save stores a grant as the team's provider (Server.saveConnected:
	// the provider limit and its lock are the Management API's).
	save func(*OAuthGrant) (*store.Provider, bool, error)
	view func(*store.Provider) providerItem
	// returnTo is ProviderOptions.OAuthReturnTo.
	returnTo string
}

// newOAuthFlow is s's connect flow.
func newOAuthFlow(s *Server) *oauthFlow {
	return &oauthFlow{conn: s.opts.Providers.OAuth, log: s.log, save: s.saveConnected, view: s.providerView, returnTo: s.opts.Providers.OAuthReturnTo}
}

// start answers POST /api/v1/providers/oauth/{kind}/start.
func (f *oauthFlow) start(c *call) error {
	kind := c.r.PathValue("kind")
	if kind != "google" && kind != "microsoft" {
		return &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound, Message: "unknown OAuth provider " + kind + ` (use "google" or "microsoft")`}
	}
	if f.conn == nil {
		return httpapi.ErrValidation("kind", httpapi.FieldNotSupported, "connected accounts are not configured on this server ([oauth."+kind+"] in the config)")
	}
	authURL, state, err := f.conn.Start(c.team(), kind)
	switch {
	case errors.Is(err, ErrOAuthNotConfigured):
		return httpapi.ErrValidation("kind", httpapi.FieldNotSupported, "connected accounts are not configured on this server ([oauth."+kind+"] in the config)")
	case err != nil:
		return err
	}
	c.ok(http.StatusOK, map[string]string{"authorization_url": authURL, "state": state})
	return nil
}

// callback answers GET /oauth/callback, where the user's browser comes
// back. The single-use state authenticates it (no API key). A returning
// account (same team, type and address) gets its new token and is active
// again: that is the way back from status pending.
func (f *oauthFlow) callback(c *call) error {
	p, created, err := f.connect(c)
	if f.returnTo != "" && acceptsHTML(c.r) {
		// A person's browser, sent back by the provider, goes back to the
		// dashboard rather than to a JSON answer. A failure is a fixed
		// notice: nothing from the query is reflected.
		to := f.returnTo + "/new?connect=failed"
		if err != nil {
			f.log.Info("account not connected", "request_id", c.reqID, "err", err)
		} else {
			to = f.returnTo + "/" + p.ID
		}
		http.Redirect(c.w, c.r, to, http.StatusSeeOther)
		return nil
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		c.w.Header().Set("Location", "/api/v1/providers/"+p.ID)
	}
	c.ok(status, f.view(p))
	return nil
}

// acceptsHTML reports a request from a browser navigating (Accept names
// text/html), as opposed to an API client.
func acceptsHTML(r *http.Request) bool { return strings.Contains(r.Header.Get("Accept"), "text/html") }

// connect completes the flow: checks the state, exchanges the code and
// stores the grant as the team's provider.
func (f *oauthFlow) connect(c *call) (*store.Provider, bool, error) {
	q := c.r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	if f.conn == nil {
		return nil, false, httpapi.ErrValidation("state", httpapi.FieldNotSupported, "connected accounts are not configured on this server")
	}
	if state == "" || len(state) > 512 {
		return nil, false, httpapi.ErrInvalidParam("state", "state is missing or invalid")
	}
	if e := q.Get("error"); e != "" {
		f.conn.Finish(c.r.Context(), state, "") // consume the state
		return nil, false, httpapi.ErrValidation("error", httpapi.FieldInvalid, "the account was not connected: "+truncate(e, 200))
	}
	if code == "" || len(code) > 4096 {
		return nil, false, httpapi.ErrInvalidParam("code", "code is missing or invalid")
	}
	g, err := f.conn.Finish(c.r.Context(), state, code)
	switch {
	case errors.Is(err, ErrOAuthState):
		return nil, false, httpapi.ErrValidation("state", httpapi.FieldInvalid, "this connect link was already used or has expired; start again")
	case errors.Is(err, ErrOAuthDeclined):
		return nil, false, httpapi.ErrValidation("code", httpapi.FieldInvalid, err.Error())
	case errors.Is(err, store.ErrUnavailable):
		return nil, false, err // cluster mode, etcd away: 503 cluster_unavailable
	case err != nil:
		f.log.Warn("oauth exchange failed", "request_id", c.reqID, "err", err)
		return nil, false, &httpapi.Error{Status: http.StatusBadGateway, Code: "service_unavailable", Retryable: true,
			Message: "the account could not be connected; try again"}
	}
	p, created, err := f.save(g)
	if err != nil {
		return nil, false, err
	}
	f.log.Info("connected account saved", "request_id", c.reqID, "provider", p.ID, "type", p.Type, "team", p.TeamID, "created", created)
	return p, created, nil
}

// saveConnected stores a grant: the team's existing provider for that
// address gets the new token (and leaves pending), otherwise a new one is
// created within the team's provider limit.
func (s *Server) saveConnected(g *OAuthGrant) (*store.Provider, bool, error) {
	sealed := s.opts.Sealer.Seal(string(g.TokenJSON))
	now := s.now()
	defer s.providerLocks.lock(g.TeamID)()
	existing, err := s.st.Providers(g.TeamID)
	if err != nil {
		return nil, false, err
	}
	for _, e := range existing {
		if e.Type == g.ProviderType && strings.EqualFold(e.OAuthEmail, g.Email) {
			p, err := s.st.UpdateProvider(g.TeamID, e.ID, 0, func(p *store.Provider) error {
				p.OAuthTokenSealed, p.UpdatedAt = sealed, now
				if p.Status == state.ProviderPending || p.Status == state.ProviderError {
					p.Status, p.StatusReason, p.ActivatedAt = state.ProviderActive, "", now
				}
				return nil
			})
			return p, false, err
		}
	}
	if err := s.checkProviderRoom(g.TeamID); err != nil {
		return nil, false, err
	}
	name := "Gmail " + g.Email
	if g.ProviderType == store.TypeOutlook {
		name = "Outlook " + g.Email
	}
	p := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: g.TeamID, Name: truncate(name, 100),
		Type: g.ProviderType, Status: state.ProviderActive, OAuthEmail: g.Email, OAuthTokenSealed: sealed,
		CreatedAt: now, UpdatedAt: now, ActivatedAt: now}
	if err := s.st.CreateProvider(p); err != nil {
		return nil, false, err
	}
	return p, true, nil
}
