// Package dashboard is smtpmux's web dashboard: server-rendered pages
// (html/template, files embedded with go:embed, no JavaScript) served on
// the [http] listener next to the Management API.
//
// The dashboard holds no rule of its own. Every page and every form is a
// call to the Management API handler in the same process (api.go), made
// with the signed-in key as its Bearer credential and the browser's
// address as its client address: authentication, permissions, rate
// limits, validation and tenancy are the API's, by construction, and a
// key with limited permissions sees in the dashboard exactly what the API
// would show it. Sign-in checks a key through admin's SignInRoot (the
// same check, counted against the same per-address failure limit).
//
// Sessions live in memory (session.go): a restart signs everyone out.
package dashboard

import (
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Auth checks sign-in credentials exactly as the Management API does;
// *admin.Server implements it.
type Auth interface {
	// SignInRoot returns the root key secret names; a sending key, a
	// revoked key or an unknown secret is an error.
	SignInRoot(r *http.Request, secret string) (*store.APIKey, error)
	// SignInOperator checks the operator token.
	SignInOperator(r *http.Request, token string) error
}

// Options configure a Dashboard. API and Auth are required.
type Options struct {
	// API is the Management API handler (*admin.Server): every page is
	// rendered from its answers.
	API  http.Handler
	Auth Auth
	// IdleTimeout ends a session not used for this long (default 30 min).
	IdleTimeout time.Duration
	// SecureCookie marks the session cookie Secure even on plain HTTP,
	// for a listener behind a TLS-terminating proxy. Requests that came
	// in over TLS always get a Secure cookie.
	SecureCookie bool
	// Now is the clock (test seam); nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Dashboard is the dashboard's HTTP handler. Mount it on the listener's
// mux; it is safe for concurrent use.
type Dashboard struct {
	opts     Options
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New builds a Dashboard, parsing its templates (a broken template is a
// programming error and panics at startup, not at the first request).
func New(opts Options) *Dashboard {
	if opts.API == nil || opts.Auth == nil {
		panic("dashboard.New: Options.API and Options.Auth are required")
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	d.sessions = newSessions(opts.IdleTimeout, opts.Now)
	d.pages = parsePages()
	d.routes()
	return d
}

// Patterns are the paths the dashboard serves; cmd routes them here and
// everything else to the Management API, whose paths (/api/v1/…,
// /healthz, /readyz, /t/…, /oauth/callback) none of them overlaps.
var Patterns = []string{"/{$}", "/signin", "/signout", "/accounts", "/accounts/", "/logs", "/messages/",
	"/overview", "/groups", "/groups/", "/keys", "/keys/", "/domains", "/domains/", "/mailboxes", "/mailboxes/", "/webhooks", "/webhooks/", "/suppressions", "/suppressions/", "/operator", "/operator/", "/static/"}

// Mount registers the dashboard's Patterns on mux.
func (d *Dashboard) Mount(mux *http.ServeMux) {
	for _, p := range Patterns {
		mux.Handle(p, d)
	}
}

func (d *Dashboard) routes() {
	m := d.mux
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", d.home)
	m.HandleFunc("GET /signin", d.signInPage)
	m.HandleFunc("POST /signin", d.signIn)
	m.HandleFunc("POST /signout", d.signOut)

	m.HandleFunc("GET /accounts", d.team(d.accounts))
	m.HandleFunc("GET /accounts/new", d.team(d.newAccount))
	m.HandleFunc("POST /accounts/new", d.team(d.createAccount))
	m.HandleFunc("POST /accounts/connect", d.team(d.oauthStart))
	m.HandleFunc("POST /accounts/request-increase", d.team(d.requestIncrease))
	m.HandleFunc("POST /accounts/managed-increase", d.team(d.managedIncrease))
	m.HandleFunc("GET /accounts/{id}", d.team(d.account))
	m.HandleFunc("POST /accounts/{id}", d.team(d.updateAccount))
	m.HandleFunc("POST /accounts/{id}/test", d.team(d.testAccount))
	m.HandleFunc("POST /accounts/{id}/activate", d.team(d.setActive(true)))
	m.HandleFunc("POST /accounts/{id}/deactivate", d.team(d.setActive(false)))
	m.HandleFunc("GET /accounts/{id}/delete", d.team(d.confirmDelete))
	m.HandleFunc("POST /accounts/{id}/delete", d.team(d.deleteAccount))

	m.HandleFunc("GET /logs", d.team(d.logs))
	m.HandleFunc("GET /messages/{id}", d.team(d.message))
	m.HandleFunc("GET /overview", d.team(d.overview))

	m.HandleFunc("GET /groups", d.team(d.groups))
	m.HandleFunc("POST /groups", d.team(d.createGroup))
	m.HandleFunc("GET /groups/{id}/delete", d.team(d.confirmDeleteGroup))
	m.HandleFunc("POST /groups/{id}/delete", d.team(d.deleteGroup))

	m.HandleFunc("GET /keys", d.team(d.keys))
	m.HandleFunc("POST /keys", d.team(d.createKey))
	m.HandleFunc("POST /keys/{id}/revoke", d.team(d.revokeKey))

	m.HandleFunc("GET /domains", d.team(d.domains))
	m.HandleFunc("POST /domains", d.team(d.createDomain))
	m.HandleFunc("GET /domains/{id}", d.team(d.domainPage))
	m.HandleFunc("POST /domains/{id}/verify", d.team(d.verifyDomain))
	m.HandleFunc("POST /domains/{id}/delete", d.team(d.deleteDomain))

	m.HandleFunc("GET /mailboxes", d.team(d.mailboxes))
	m.HandleFunc("POST /mailboxes", d.team(d.createMailbox))
	m.HandleFunc("GET /mailboxes/{id}", d.team(d.mailboxPage))
	m.HandleFunc("POST /mailboxes/{id}/passwords", d.team(d.createMailboxPassword))
	m.HandleFunc("POST /mailboxes/{id}/passwords/{pw}/revoke", d.team(d.revokeMailboxPassword))
	m.HandleFunc("POST /mailboxes/{id}/suspend", d.team(d.setMailbox("suspend", "Mailbox suspended: its passwords no longer send.")))
	m.HandleFunc("POST /mailboxes/{id}/resume", d.team(d.setMailbox("resume", "Mailbox resumed.")))

	m.HandleFunc("GET /webhooks", d.team(d.webhooks))
	m.HandleFunc("POST /webhooks", d.team(d.createWebhook))
	m.HandleFunc("GET /webhooks/{id}", d.team(d.webhookPage))
	m.HandleFunc("POST /webhooks/{id}/{action}", d.team(d.webhookAction))

	m.HandleFunc("GET /suppressions", d.team(d.suppressions))
	m.HandleFunc("POST /suppressions", d.team(d.addSuppression))
	m.HandleFunc("POST /suppressions/remove", d.team(d.removeSuppression))

	m.HandleFunc("GET /operator", d.operator(d.operatorHome))
	m.HandleFunc("GET /operator/nodes", d.operator(d.operatorNodes))
	m.HandleFunc("POST /operator/limit-requests/{id}/{decision}", d.operator(d.decideLimitRequest))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.render(w, r, http.StatusNotFound, "error", nil, page{Title: "Not found", Message: "There is no such page."})
	})
}

// ServeHTTP sets the headers every dashboard answer carries, refuses
// cross-site form posts, and dispatches.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script at all, styles only from our own file, forms only to us,
	// and never inside a frame (clickjacking).
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameOrigin(r) {
		d.render(w, r, http.StatusForbidden, "error", nil, page{Title: "Refused", Message: "This form was posted from another site."})
		return
	}
	d.mux.ServeHTTP(w, r)
}

// sameOrigin refuses posts a browser marks as cross-site. Browsers send
// Sec-Fetch-Site and Origin on every POST; a client that sends neither is
// not a browser that a third-party page could drive, and still needs the
// session's CSRF token.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return false
	}
	return true
}
