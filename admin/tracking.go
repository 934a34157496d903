package admin

import (
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// The tracking redirect (SPEC §6). A provider's tracking_domain makes the
// shaper rewrite links to https://<tracking_domain>/t/<token>; the team
// points that host at this daemon (usually through a TLS-terminating
// proxy), and GET /t/<token> answers with a 302 to the original URL.
//
// A link redirects only where it was issued (SPEC §10): the request's Host
// must be the tracking domain the link was rewritten for, and, when a
// [tracking] listener is configured, it must come in on that listener.
// Otherwise team A's token would redirect on team B's tracking domain or
// on the API's host, an open redirect under someone else's name. The
// link's team must also still have a verified domain that is the Host or
// a parent of it (tracking_domain.go), so links issued for names the team
// never proved, or no longer does, stop redirecting. Links
// stored before they recorded their host are refused. A link may also
// expire ([tracking] link_ttl). All refusals are the same 404, so a
// probe learns nothing about which tokens exist. Tokens are HMACs (see
// relay/shaping.Token) stored with their target when the message is
// shaped; a token that was never stored answers 404, so a forged or
// altered token cannot redirect anywhere.

// maxTokenLen bounds what is looked up; real tokens are 22 characters.
const maxTokenLen = 64

// tracker is the public tracking redirect: what a recipient's browser
// reaches, with no credential. It is its own type, not a Server method,
// because it shares nothing with the Management API but the middleware
// (request ID, access log) and the store: what it may read and emit is
// all here.
type tracker struct {
	st  *store.Store
	log *slog.Logger
	now func() time.Time
	// hooks gets message.clicked, unless onClick is set (cmd's wiring:
	// the relay's event sink, which also feeds metrics).
	hooks   *webhook.Dispatcher
	onClick func(teamID, messageID, url string)
	// listenerOnly: a [tracking] listener is configured, and links
	// redirect only on it (TrackingHandler marks its requests).
	listenerOnly bool
}

// newTracker is s's tracking redirect; New calls it once the webhook
// dispatcher exists.
func newTracker(s *Server) *tracker {
	return &tracker{st: s.st, log: s.log, now: s.now, hooks: s.hooks, onClick: s.opts.Hooks.OnClick,
		listenerOnly: s.opts.HTTP.TrackingListener}
}

// redirect is GET /t/{token}. HEAD answers the same redirect without
// counting a click, since link checkers and previews use it.
func (t *tracker) redirect(c *call) error {
	token := c.r.PathValue("token")
	if !tokenShape(token) {
		return httpapi.ErrNotFound("link")
	}
	if info := httpapi.InfoFrom(c.r); t.listenerOnly && (info == nil || !info.Tracking) {
		return httpapi.ErrNotFound("link")
	}
	l, err := t.st.TrackingLinkByToken(token)
	if err != nil {
		return storeErr(err, "link")
	}
	if l.Host == "" || !strings.EqualFold(requestHost(c.r), l.Host) {
		return httpapi.ErrNotFound("link")
	}
	if l.ExpiresAt != nil && !t.now().Before(*l.ExpiresAt) {
		return httpapi.ErrNotFound("link")
	}
	// The team must still own the name (see ownsLinkHost).
	if ok, err := ownsLinkHost(t.st, l.TeamID, l.Host); err != nil {
		return err
	} else if !ok {
		return httpapi.ErrNotFound("link")
	}
	if !redirectTarget(l.URL) {
		// Only the shaper writes links and it stores http(s) URLs only;
		// anything else here is not ours to follow.
		return httpapi.ErrNotFound("link")
	}
	if c.r.Method == http.MethodGet {
		t.click(c, l)
	}
	h := c.w.Header()
	h.Set("Cache-Control", "no-store")      // every click must reach us to be counted
	h.Set("Referrer-Policy", "no-referrer") // the token URL is not the destination's business
	http.Redirect(c.w, c.r, l.URL, http.StatusFound)
	return nil
}

// click records one click and emits message.clicked. Neither may stand in
// the way of the redirect: the recipient clicked a link and should get to
// it even if the store is unhappy, so failures are only logged.
func (t *tracker) click(c *call, l *store.TrackingLink) {
	now := t.now()
	ua := c.r.UserAgent()
	if _, err := t.st.RecordClick(l.Token, now, ua); err != nil {
		t.log.Error("click not recorded", "request_id", c.reqID, "msg_id", l.MessageID, "err", err)
	}
	t.log.Info("link clicked", "event", "clicked", "request_id", c.reqID, "msg_id", l.MessageID,
		"team", l.TeamID, "link_index", l.Index)
	if t.onClick != nil {
		t.onClick(l.TeamID, l.MessageID, l.URL)
		return
	}
	e := event.Event{Type: event.Clicked, TeamID: l.TeamID, MessageID: l.MessageID, URL: l.URL, At: now,
		Extra: map[string]any{"link_index": l.Index, "user_agent": nullable(truncate(ua, 256))}}
	// The same bytes go to every recipient, so a click names its recipient
	// only when there was just one.
	if m, err := t.st.Message(l.MessageID); err == nil && len(m.Recipients) == 1 {
		e.Recipients = []string{m.Recipients[0].Address}
	}
	t.hooks.Emit(e)
}

// requestHost is the request's Host without a port. A proxy in front of
// the tracking listener must pass the original Host on.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(h, ".")
}

// tokenShape accepts base64url text of a sane length; anything else cannot
// be a token and is refused without a store read.
func tokenShape(t string) bool {
	if t == "" || len(t) > maxTokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// redirectTarget reports whether u is an absolute http(s) URL we may send
// a browser to.
func redirectTarget(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" || strings.ContainsAny(u, "\r\n\x00") {
		return false
	}
	return pu.Scheme == "http" || pu.Scheme == "https"
}

// TrackingHandler serves only the tracking redirect (and /healthz), for a
// listener the public may reach — config [tracking] listen — while the
// Management API stays on its own, private listener. Everything else
// answers the JSON 404.
func (s *Server) TrackingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/t/") || r.URL.Path == "/healthz" {
			// Marks the request as the tracking listener's for ServeHTTP.
			s.ServeHTTP(w, httpapi.WithInfo(r, &httpapi.Info{Tracking: true}))
			return
		}
		id := store.NewID(store.PrefixRequest)
		w.Header().Set("X-Request-Id", id)
		httpapi.WriteError(w, id, &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound, Message: "no such endpoint"})
	})
}
