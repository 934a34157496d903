// Package admin is smtpmux's HTTP face: the Management API under /api/v1
// (providers and their usage and limit requests, delivery groups, API
// keys, mailboxes and their passwords, domains, webhooks, the message log
// and metrics, operator endpoints, the OpenAPI document), the public
// handlers (tracking redirects under /t/, the OAuth callback) and /healthz
// and /readyz. The Sending API (/api/v1/emails/send and /send/batch) is
// admin/sendapi's, mounted here; the envelope, decoding, request IDs and
// idempotency both use are internal/httpapi's.
// Webhook delivery (admin/webhook) is started and stopped by cmd; the
// retention sweep and the DNS re-check of domains are internal/jobs'.
//
// Every answer uses the SPEC §3 envelope: {"ok":true,"data":…,"meta":{…}}
// for success (lists add "pagination"), {"ok":false,"error":{…},"meta":{…}}
// for failure, including unknown routes and wrong methods, so that clients
// never have to parse a plain-text error.
//
// The package talks to persistence only through *store.Store and to the
// delivery side only through the small interfaces and functions declared
// here and in sendapi (sendapi.Sender, ProviderTester, OAuthConnector, Options.Providers.Health,
// Options.Managed.Usage, Options.Ready), whose shared types live in leaf
// packages (internal/event, internal/provhealth, internal/senderr), so cmd
// can wire it without admin importing relay.
package admin

import (
	"context"
	"github.com/smtpmux/smtpmux/internal/deliverability"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/admin/sendapi"
	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/ratelimit"
	"github.com/smtpmux/smtpmux/store"
)

// ProviderTester checks a provider's connection and credentials for
// POST /providers/{id}/test (SMTP: connect, TLS, AUTH, QUIT). A Deferred
// outcome says nothing about the settings (the upstream did not answer in
// time, or said "not now"), so the provider keeps its status. The result's
// message is shown to the team and must not contain secrets.
type ProviderTester interface {
	TestProvider(ctx context.Context, p *store.Provider) provhealth.TestResult
}

// Options configure a Server. Store and Sealer are required; the groups
// below say which part of the API each setting is for.
type Options struct {
	Store  *store.Store
	Sealer *store.Sealer // seals smtp_password before it is stored
	Logger *slog.Logger  // nil discards
	// Now is the clock (test seam); nil means time.Now.
	Now func() time.Time
	// Version is reported by /readyz; Ready decides readiness (nil:
	// always ready).
	Version string
	Ready   func() error
	// OperatorToken guards /api/v1/operator/…; empty disables that API.
	OperatorToken string
	// KeyRotationGrace is how long a rotated key's previous secret keeps
	// authenticating when the rotate request does not say ([keys]
	// rotation_grace, whose default is 24 h); 0 ends it at rotation.
	KeyRotationGrace time.Duration
	// DNSResolver is the resolver domain verification queries, as
	// host:port (config [dns] resolver); empty: the system's resolvers.
	DNSResolver string
	// Cluster shows cluster mode in /readyz and GET /operator/nodes;
	// nil: single node.
	Cluster ClusterView
	// ClusterToken, when set, must be on requests another node forwards
	// (TokenHeader) for them to be treated as such.
	ClusterToken string
	// IdempotencyRecords keeps the Idempotency-Key records; nil: Store.
	// Cluster mode passes etcd's, so that a retry on another node is
	// recognised.
	IdempotencyRecords httpapi.IdempotencyRecords
	// StartedAt is when the process started (GET /operator/nodes).
	StartedAt time.Time
	// Deliverability are the rate thresholds of GET …/deliverability
	// (zero: deliverability.Defaults).
	Deliverability deliverability.Thresholds
	// SESHook serves the public POST /hooks/ses/{id} that Amazon SNS
	// posts SES notifications to; it authenticates posts itself (SNS
	// signatures, relay/bounce). nil answers 404 there.
	SESHook http.Handler

	HTTP      HTTPOptions
	Sending   sendapi.Config
	Providers ProviderOptions
	Managed   ManagedOptions
	Webhooks  WebhookOptions
	Hooks     Hooks
}

// HTTPOptions are the limits every request meets, and the names this
// server answers as.
type HTTPOptions struct {
	// RateLimit requests per RateWindow per management key (SPEC §3:
	// 600 per 60 s, the defaults).
	RateLimit  int
	RateWindow time.Duration
	// Deadlines are the body read deadlines: a short one until the
	// credential is checked, the full one after (see httpapi.Deadlines).
	Deadlines httpapi.Deadlines
	// AuthAttempts, when set, limits failed authentications per client
	// address (the operator token, root keys, sending credentials),
	// shared with SMTP AUTH.
	AuthAttempts httpapi.AuthAttempts
	// TrackingListener says that a separate listener serves the tracking
	// redirect (TrackingHandler); then this handler's own /t/ answers 404.
	TrackingListener bool
	// ReservedHosts are further names the daemon answers as (the hosts of
	// its HTTP and tracking listeners): no team may use them, nor
	// Sending.Hostname, as a tracking domain, which would make this
	// server's own name an open redirect.
	ReservedHosts []string
}

// ProviderOptions configure the providers API.
type ProviderOptions struct {
	// Tester runs provider tests; nil answers 503 on the test endpoint.
	Tester ProviderTester
	// TestTimeout bounds one provider test (default 30 s).
	TestTimeout time.Duration
	// OAuth runs the Gmail / Microsoft 365 connect flow; nil: not offered.
	OAuth OAuthConnector
	// OAuthReturnTo, when set, is where a browser that the provider sent
	// back to /oauth/callback goes afterwards (the dashboard's accounts
	// page): <OAuthReturnTo>/<provider id> when connected, or
	// <OAuthReturnTo>/new?connect=failed. API clients get JSON as before.
	OAuthReturnTo string
	// Health returns a provider's breaker state for ProviderItem.health;
	// nil reports every provider closed.
	Health func(providerID string) provhealth.Snapshot
	// Limit is the default number of own providers per team (SPEC §2:
	// 200); Team.ProviderLimit overrides it.
	Limit int
	// AllowPrivateHosts lets teams' providers name loopback, private and
	// other internal hosts, and own-SES endpoints other than Amazon's
	// ([providers] allow_private_hosts).
	AllowPrivateHosts bool
	// SESDefaultCredentials lets a team's own-SES provider go without
	// keys and sign with the daemon's AWS credentials
	// ([providers] ses_default_credentials).
	SESDefaultCredentials bool
}

// ManagedOptions configure the managed account's limits.
type ManagedOptions struct {
	// DailyLimit is the default daily limit in accepted recipients (SPEC
	// §2: 50); Team.ManagedDailyLimit overrides it. HourlyLimit likewise
	// per hour (SPEC §2: 2). GET /providers/limits reports both.
	DailyLimit  int
	HourlyLimit int
	// Usage reports the managed account providerID's usage in the
	// current UTC hour and day as the relay counts it at acceptance (see
	// ManagedCounts). nil, or ok false, falls back to counting today's
	// recipients sent through it in the message log, which misses
	// recipients accepted and still queued.
	Usage func(providerID string) (ManagedCounts, bool)
}

// WebhookOptions configure webhook delivery.
type WebhookOptions struct {
	// Dispatcher queues and delivers webhook events; the same one must
	// be the relay's event sink and be Run by cmd. nil makes one that
	// only queues (deliveries wait for a running dispatcher).
	Dispatcher *webhook.Dispatcher
	// AllowPrivateTargets accepts webhook URLs on loopback and private
	// addresses (development and tests).
	AllowPrivateTargets bool
}

// Hooks are told of events the API causes.
type Hooks struct {
	// OnLimitDecided is called once the operator's decision on a
	// limit-increase request is durable (event limit_request.decided);
	// decision is "approved" or "denied". Cancellations by the team
	// are not decisions and are not reported. nil: nobody listens.
	OnLimitDecided func(teamID, requestID, decision string)
	// OnClick, when set, receives every click on a tracking link instead
	// of the built-in message.clicked event on Webhooks. nil (the usual)
	// emits that event, with the link index and user agent.
	OnClick func(teamID, messageID, url string)
}

// Server is the admin HTTP handler. It is safe for concurrent use.
type Server struct {
	opts Options
	st   *store.Store
	log  *slog.Logger
	mux  *http.ServeMux
	// limiter is the per-key request limit (SPEC §3: 600 requests per
	// 60 s); opts.HTTP.RateLimit is always > 0 here, so it always applies.
	limiter *ratelimit.Limiter
	// used throttles root keys' last_used_at writes.
	used *store.LastUsed
	// providerLocks serialise "count the team's own providers, then
	// create one" per team, so that two concurrent creates cannot both
	// pass the limit check, and other teams' creates do not wait.
	providerLocks teamLocks
	// refMu keeps group references valid: writes that store a reference
	// to a delivery group (a provider's group_id, a send scope) hold it
	// shared from the existence check to their commit, and deleting a
	// group holds it exclusively, so no write can attach to a group that
	// is being deleted. One process owns the store, so a process-local lock is enough.
	refMu sync.RWMutex
	// trackMu keeps tracking domains unique across teams: provider writes
	// hold it from reading who uses which domain to their commit (see
	// trackingJudge). One process owns the store, as for refMu.
	trackMu sync.Mutex
	// idem is the idempotency layer of every POST, the Sending API's too.
	idem  *httpapi.Idempotency
	hooks *webhook.Dispatcher
	// sending is the Sending API, mounted on its two routes.
	sending *sendapi.Handler
	// res are the team-owned record kinds' item routes (resource.go).
	res resources
	// track is the public tracking redirect (tracking.go).
	track *tracker
	// oauth is the connect flow, whose callback is public (oauth_connect.go).
	oauth *oauthFlow
}

// New builds a Server from opts, filling defaults.
func New(opts Options) *Server {
	if opts.Store == nil || opts.Sealer == nil {
		panic("admin.New: Options.Store and Options.Sealer are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Providers.Limit <= 0 {
		opts.Providers.Limit = 200
	}
	if opts.HTTP.RateLimit <= 0 {
		opts.HTTP.RateLimit = 600
	}
	if opts.HTTP.RateWindow <= 0 {
		opts.HTTP.RateWindow = time.Minute
	}
	if opts.Providers.TestTimeout <= 0 {
		opts.Providers.TestTimeout = 30 * time.Second
	}
	if opts.Managed.DailyLimit <= 0 {
		opts.Managed.DailyLimit = 50
	}
	if opts.Managed.HourlyLimit <= 0 {
		opts.Managed.HourlyLimit = 2
	}
	s := &Server{opts: opts, st: opts.Store, log: opts.Logger, mux: http.NewServeMux()}
	s.res = newResources(s)
	var records httpapi.IdempotencyRecords = s.st
	if opts.IdempotencyRecords != nil {
		records = opts.IdempotencyRecords
	}
	s.idem = httpapi.NewIdempotency(records, opts.Sealer, s.log, opts.Now)
	s.hooks = opts.Webhooks.Dispatcher
	if s.hooks == nil {
		s.hooks = webhook.New(webhook.Options{Store: s.st, Sealer: opts.Sealer, Logger: s.log, Now: opts.Now,
			AllowPrivateTargets: opts.Webhooks.AllowPrivateTargets})
	}
	s.sending = sendapi.New(sendapi.Options{Config: opts.Sending, Store: s.st, Idempotency: s.idem,
		Logger: s.log, Now: opts.Now, AuthAttempts: opts.HTTP.AuthAttempts, Deadlines: opts.HTTP.Deadlines})
	s.track = newTracker(s)
	s.oauth = newOAuthFlow(s)
	// A closure, not the method value s.st.TouchKey, so that s.st is read
	// when a key is used, as before, not while the Server is built.
	s.used = store.NewLastUsed(func(id string, at time.Time) error { return s.st.TouchKey(id, at) })
	s.limiter = ratelimit.New(opts.HTTP.RateLimit, opts.HTTP.RateWindow, opts.Now)
	s.register()
	return s
}

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

// authKind says how a route authenticates.
type authKind int

const (
	authNone     authKind = iota // health probes
	authRoot                     // a team's root key
	authOperator                 // the operator token
)

// route is one endpoint. Keeping the table in one place makes the API
// surface reviewable at a glance and lets register derive the 405 answers.
type route struct {
	method, path string
	auth         authKind
	perm         string
	h            func(*call) error
}

// mounted is an endpoint served by another package's handler, which
// authenticates its own requests: the Sending API's.
type mounted struct {
	method, path string
	h            http.Handler
}

func (s *Server) mounts() []mounted {
	return []mounted{
		{"POST", "/api/v1/emails/send", s.sending.Send()},
		{"POST", "/api/v1/emails/send/batch", s.sending.Batch()},
		{"POST", "/hooks/ses/{id}", s.sesHook()},
	}
}

// sesHook is Options.SESHook, or a JSON 404 when none is wired.
func (s *Server) sesHook() http.Handler {
	if s.opts.SESHook != nil {
		return s.opts.SESHook
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, httpapi.RequestID(r), &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound,
			Message: "SES notifications are not received here"})
	})
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/healthz", authNone, "", s.healthz},
		{"GET", "/readyz", authNone, "", s.readyz},
		{"GET", "/api/v1/openapi.json", authNone, "", s.openapiDoc},

		{"GET", "/api/v1/providers", authRoot, permProviderRead, s.listProviders},
		{"POST", "/api/v1/providers", authRoot, permProviderCreate, s.createProvider},
		{"GET", "/api/v1/providers/{id}", authRoot, permProviderRead, s.res.providers.get},
		{"PATCH", "/api/v1/providers/{id}", authRoot, permProviderUpdate, s.patchProvider},
		{"DELETE", "/api/v1/providers/{id}", authRoot, permProviderDelete, s.res.providers.del},
		{"POST", "/api/v1/providers/{id}/activate", authRoot, permProviderUpdate, s.activateProvider},
		{"POST", "/api/v1/providers/{id}/deactivate", authRoot, permProviderUpdate, s.deactivateProvider},
		{"POST", "/api/v1/providers/{id}/test", authRoot, permProviderUpdate, s.testProvider},
		{"GET", "/api/v1/providers/usage", authRoot, permProviderRead, s.providerUsage},
		{"GET", "/api/v1/providers/stats", authRoot, permProviderRead, s.providerStats},
		{"GET", "/api/v1/providers/limits", authRoot, permProviderRead, s.providerLimits},
		{"POST", "/api/v1/providers/limits/sending-accounts/request-increase", authRoot, permProviderUpdate, s.requestSendingAccountsIncrease},
		{"GET", "/api/v1/providers/shared-amazon-ses-limit-request", authRoot, permProviderRead, s.listManagedSESRequests},
		{"POST", "/api/v1/providers/shared-amazon-ses-limit-request", authRoot, permProviderUpdate, s.createManagedSESRequest},
		{"DELETE", "/api/v1/providers/shared-amazon-ses-limit-request/{request_id}", authRoot, permProviderUpdate, s.cancelManagedSESRequest},
		{"POST", "/api/v1/providers/oauth/{kind}/start", authRoot, permProviderCreate, s.oauth.start},
		{"GET", "/oauth/callback", authNone, "", s.oauth.callback},

		{"GET", "/api/v1/delivery-groups", authRoot, permGroupRead, s.listGroups},
		{"POST", "/api/v1/delivery-groups", authRoot, permGroupCreate, s.createGroup},
		{"GET", "/api/v1/delivery-groups/{id}", authRoot, permGroupRead, s.res.groups.get},
		{"PATCH", "/api/v1/delivery-groups/{id}", authRoot, permGroupUpdate, s.patchGroup},
		{"DELETE", "/api/v1/delivery-groups/{id}", authRoot, permGroupDelete, s.deleteGroup},

		{"GET", "/api/v1/mailboxes", authRoot, permMailboxRead, s.listMailboxes},
		{"POST", "/api/v1/mailboxes", authRoot, permMailboxCreate, s.createMailbox},
		{"GET", "/api/v1/mailboxes/{id}", authRoot, permMailboxRead, s.res.mailboxes.get},
		{"PATCH", "/api/v1/mailboxes/{id}", authRoot, permMailboxUpdate, s.patchMailbox},
		{"DELETE", "/api/v1/mailboxes/{id}", authRoot, permMailboxDelete, s.res.mailboxes.del},
		{"POST", "/api/v1/mailboxes/{id}/suspend", authRoot, permMailboxUpdate, s.suspendMailbox},
		{"POST", "/api/v1/mailboxes/{id}/resume", authRoot, permMailboxUpdate, s.resumeMailbox},
		{"GET", "/api/v1/mailboxes/{id}/passwords", authRoot, permMailboxRead, s.listPasswords},
		{"POST", "/api/v1/mailboxes/{id}/passwords", authRoot, permMailboxUpdate, s.createPassword},
		{"DELETE", "/api/v1/mailboxes/{id}/passwords/{password_id}", authRoot, permMailboxUpdate, s.revokePassword},

		{"GET", "/api/v1/api-keys", authRoot, permKeyRead, s.listKeys},
		{"POST", "/api/v1/api-keys", authRoot, permKeyCreate, s.createKey},
		{"GET", "/api/v1/api-keys/{id}", authRoot, permKeyRead, s.getKey},
		{"DELETE", "/api/v1/api-keys/{id}", authRoot, permKeyDelete, s.revokeKey},
		{"POST", "/api/v1/api-keys/{id}/rotate", authRoot, permKeyUpdate, s.rotateKey},

		{"GET", "/api/v1/emails/{id}", authRoot, permEmailRead, s.getEmail},
		{"GET", "/api/v1/emails/logs", authRoot, permEmailRead, s.emailLogs},
		{"GET", "/api/v1/emails/metrics", authRoot, permEmailRead, s.emailMetrics},

		{"GET", "/api/v1/webhooks", authRoot, permWebhookRead, s.listWebhooks},
		{"POST", "/api/v1/webhooks", authRoot, permWebhookCreate, s.createWebhook},
		{"GET", "/api/v1/webhooks/{id}", authRoot, permWebhookRead, s.res.webhooks.get},
		{"PATCH", "/api/v1/webhooks/{id}", authRoot, permWebhookUpdate, s.patchWebhook},
		{"DELETE", "/api/v1/webhooks/{id}", authRoot, permWebhookDelete, s.res.webhooks.del},
		{"POST", "/api/v1/webhooks/{id}/rotate-secret", authRoot, permWebhookUpdate, s.rotateWebhookSecret},
		{"POST", "/api/v1/webhooks/{id}/test", authRoot, permWebhookUpdate, s.testWebhook},
		{"GET", "/api/v1/webhooks/{id}/deliveries", authRoot, permWebhookRead, s.listDeliveries},

		{"GET", "/api/v1/providers/{id}/deliverability", authRoot, permProviderRead, s.providerDeliverability},
		{"GET", "/api/v1/deliverability", authRoot, permProviderRead, s.teamDeliverability},
		{"GET", "/api/v1/suppressions", authRoot, permSuppressionRead, s.listSuppressions},
		{"POST", "/api/v1/suppressions", authRoot, permSuppressionCreate, s.createSuppression},
		{"GET", "/api/v1/suppressions/{email}", authRoot, permSuppressionRead, s.getSuppression},
		{"DELETE", "/api/v1/suppressions/{email}", authRoot, permSuppressionDelete, s.deleteSuppression},

		{"GET", "/api/v1/domains", authRoot, permDomainRead, s.listDomains},
		{"POST", "/api/v1/domains", authRoot, permDomainCreate, s.createDomain},
		{"GET", "/api/v1/domains/{id}", authRoot, permDomainRead, s.res.domains.get},
		{"DELETE", "/api/v1/domains/{id}", authRoot, permDomainDelete, s.res.domains.del},
		{"GET", "/api/v1/domains/{id}/zone-file", authRoot, permDomainRead, s.domainZoneFile},
		{"POST", "/api/v1/domains/{id}/verify", authRoot, permDomainUpdate, s.verifyDomain},
		{"GET", "/t/{token}", authNone, "", s.track.redirect},

		{"GET", "/api/v1/operator/teams", authOperator, "", s.listTeams},
		{"POST", "/api/v1/operator/teams", authOperator, "", s.createTeam},
		{"GET", "/api/v1/operator/limit-requests", authOperator, "", s.listLimitRequests},
		{"GET", "/api/v1/operator/limit-requests/{id}", authOperator, "", s.getLimitRequest},
		{"POST", "/api/v1/operator/limit-requests/{id}/approve", authOperator, "", s.approveLimitRequest},
		{"POST", "/api/v1/operator/limit-requests/{id}/deny", authOperator, "", s.denyLimitRequest},
		{"GET", "/api/v1/operator/backup", authOperator, "", s.backup},
		{"GET", "/api/v1/operator/held-teams", authOperator, "", s.listHeldTeams},
		{"POST", "/api/v1/operator/teams/{id}/release-managed-account", authOperator, "", s.releaseHeldTeam},
		{"GET", "/api/v1/operator/nodes", authOperator, "", s.listNodes},
	}
}

// answeredMethods are the methods a known path answers with a JSON 405
// when it does not serve them.
var answeredMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// register installs the route table plus, per path, patterns that answer
// the other methods with a 405 in JSON (ServeMux's own 405 is plain text),
// and a catch-all 404. The 405 patterns name their methods: a method-less
// "/providers/usage" would conflict with "PATCH /providers/{id}" (each is
// more specific in one respect), which ServeMux refuses to register.
// Other methods reach the catch-all 404.
func (s *Server) register() {
	allowed := map[string][]string{}
	var paths []string // in table order, which decides 405 conflicts (see handleUnlessConflict)
	handle := func(method, path string, h http.Handler) {
		s.mux.Handle(method+" "+path, h)
		if _, seen := allowed[path]; !seen {
			paths = append(paths, path)
		}
		allowed[path] = append(allowed[path], method)
	}
	for _, rt := range s.routes() {
		handle(rt.method, rt.path, s.wrap(rt))
	}
	for _, m := range s.mounts() {
		handle(m.method, m.path, m.h)
	}
	for _, path := range paths {
		methods := allowed[path]
		if containsStr(methods, "GET") {
			methods = append(methods, "HEAD")
		}
		sort.Strings(methods)
		allow := strings.Join(methods, ", ")
		notAllowed := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			httpapi.WriteError(w, httpapi.RequestID(r), &httpapi.Error{Status: http.StatusMethodNotAllowed, Code: httpapi.CodeMethodNotAllowed,
				Message: r.Method + " is not allowed here; allowed: " + allow})
		}
		for _, m := range answeredMethods {
			if !containsStr(methods, m) {
				handleUnlessConflict(s.mux, m+" "+path, notAllowed)
			}
		}
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, httpapi.RequestID(r), &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound,
			Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

// handleUnlessConflict registers a 405 pattern unless ServeMux refuses it
// as conflicting with one registered before: a real route, or the 405 of
// a path earlier in the table. Such conflicts are inherent to literal and
// wildcard segments crossing, as in DELETE /providers/shared-amazon-ses-
// limit-request/{request_id} against POST /providers/{id}/activate (each
// is more specific in one segment); the request that only the skipped
// pattern would have caught gets the JSON 404 instead of a 405. Real
// routes are registered with Handle, so a conflict between two of them
// still panics at startup.
func handleUnlessConflict(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); !ok || !strings.Contains(err.Error(), "conflicts with") {
				panic(v)
			}
		}
	}()
	mux.HandleFunc(pattern, h)
}

// containsStr reports whether xs holds s; generic so that typed states
// (internal/state) need no conversion.
func containsStr[S ~string](xs []S, s S) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// call is one request being served by a route handler.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	reqID string
	key   *store.APIKey // the authenticated root key (authRoot routes)
}

// team is the authenticated key's team: every resource is scoped to it.
func (c *call) team() string { return c.key.TeamID }

func (c *call) ok(status int, data any)             { httpapi.WriteOK(c.w, c.reqID, status, data) }
func (c *call) list(data any, p httpapi.Pagination) { httpapi.WriteList(c.w, c.reqID, data, p) }
func (c *call) fail(err error)                      { httpapi.Fail(c.s.log, c.w, c.r, err) }
func (c *call) pathID(prefix string) (string, bool) { return pathID(c.r, prefix) }

// pathID returns {id} when it has the shape of an ID of that kind. Other
// values cannot exist, so they answer 404 without a store lookup.
func pathID(r *http.Request, prefix string) (string, bool) {
	id := r.PathValue("id")
	return id, store.ValidID(prefix, id)
}

// wrap authenticates, rate-limits and authorises before the handler runs,
// in that order: an unauthenticated caller learns nothing about limits or
// permissions, and a refused permission still counts toward the rate.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{s: s, w: w, r: r, reqID: httpapi.RequestID(r)}
		if s.forgedNode(r) {
			err := errForgedNode()
			httpapi.RefuseUnread(c.w, c.r, err)
			c.fail(err)
			return
		}
		s.catchUp(r)
		err := s.guard(c, rt)
		if err != nil {
			httpapi.RefuseUnread(c.w, c.r, err)
		} else {
			if rt.auth != authNone {
				s.opts.HTTP.Deadlines.Authenticated(c.w, c.r)
			}
			conditional(c)
			err = s.serve(c, rt)
		}
		if err != nil {
			c.fail(err)
		}
	})
}

// serve runs the route's handler through the idempotency layer, which
// takes over only for a POST with an Idempotency-Key.
func (s *Server) serve(c *call, rt route) error {
	scope, team := "operator", ""
	if c.key != nil {
		scope, team = c.key.ID, c.key.TeamID
	}
	return s.idem.Serve(c.w, c.r, scope, team, httpapi.MaxBodyBytes, func(w http.ResponseWriter) error {
		real := c.w
		c.w = w
		defer func() { c.w = real }()
		return rt.h(c)
	})
}

func (s *Server) guard(c *call, rt route) error {
	switch rt.auth {
	case authNone:
		return nil
	case authOperator:
		if err := s.operatorAuth(c.r); err != nil {
			return err
		}
		return s.checkRate(c.w, "operator")
	}
	key, err := s.authenticate(c.r)
	if err != nil {
		return err
	}
	httpapi.SetKeyID(c.r, key.ID)
	// A fanned-out request was charged to the key on the node the client
	// asked; charging it again on every node would make one client call
	// cost a unit of each node's limit.
	if !s.provenNode(c.r) {
		if err := s.checkRate(c.w, key.ID); err != nil {
			return err
		}
	}
	if rt.perm != "" && !key.Allows(rt.perm) {
		return httpapi.ErrForbidden("this API key lacks the " + rt.perm + " permission")
	}
	c.key = key
	return nil
}

// statusWriter remembers the status for the access log and whether the
// header went out, so a panic can still be answered with a 500.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP assigns the request ID, dispatches, recovers from handler
// panics with a JSON 500 (net/http would just drop the connection), and
// writes one access-log line. Headers and bodies are never logged: they
// carry keys and passwords.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &httpapi.Info{ID: store.NewID(store.PrefixRequest), Start: start}
	if prev := httpapi.InfoFrom(r); prev != nil { // set by TrackingHandler
		info.Tracking = prev.Tracking
	}
	r = httpapi.WithInfo(r, info)
	sw := &statusWriter{ResponseWriter: w}
	s.opts.HTTP.Deadlines.Start(sw)
	sw.Header().Set("X-Request-Id", info.ID)
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("admin handler panic", "request_id", info.ID, "panic", v)
			if sw.status == 0 {
				httpapi.WriteError(sw, info.ID, httpapi.ErrInternal(info.ID))
			}
		}
		// Probes hit every few seconds; at Info they would drown the log.
		level := slog.LevelInfo
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "http request", "request_id", info.ID, "method", r.Method, "path", r.URL.Path,
			"status", sw.status, "duration_ms", time.Since(start).Milliseconds(), "key_id", info.KeyID)
	}()
	// ServeMux answers unclean paths ("//x", "/a/../b") with an HTML
	// redirect, which a JSON client cannot follow for a PATCH anyway;
	// such paths name no endpoint, so they get the JSON 404.
	if p := r.URL.Path; p == "" || p[0] != '/' || cleanPath(p) != p {
		httpapi.WriteError(sw, info.ID, &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound, Message: "no such endpoint"})
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// cleanPath is path.Clean that keeps a trailing slash, as ServeMux does.
func cleanPath(p string) string {
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// healthz is the liveness probe: it answers as long as the process serves
// HTTP, and deliberately checks nothing else, so an orchestrator does not
// restart a daemon that is merely waiting on a slow upstream.
func (s *Server) healthz(c *call) error {
	c.ok(http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz is the readiness probe: Options.Ready decides (store open,
// listeners up, …). The reason goes to the log only; probes are often
// reachable by more people than the API is.
func (s *Server) readyz(c *call) error {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			s.log.Warn("not ready", "request_id", c.reqID, "err", err)
			return httpapi.ErrUnavailable("not ready")
		}
	}
	if s.opts.Cluster != nil {
		// Ready (200) even when degraded: the node still takes and
		// delivers mail on its last view; the block says how it stands.
		id, st := s.opts.Cluster.Membership()
		rc := readyCluster{NodeID: id, State: st}
		if qp, ok := s.opts.Cluster.(QuotaPeer); ok {
			// Only a node (proven by the cluster token when one is set)
			// gets a vouch: it makes this node reserve the asker's share.
			asker := ""
			if s.fromNode(c.r) {
				asker = c.r.Header.Get(ForwardedHeader)
			}
			down, seq, rev, live := qp.AnswerPeer(asker)
			rc.Quotas, rc.QuotaVouch = "ok", seq
			if seq > 0 {
				rc.QuotaRev, rc.QuotaLive = rev, live
			}
			if down {
				rc.Quotas = QuotasUnreachable
			}
		}
		c.ok(http.StatusOK, map[string]any{"status": "ready", "version": s.opts.Version, "cluster": rc})
		return nil
	}
	c.ok(http.StatusOK, map[string]string{"status": "ready", "version": s.opts.Version})
	return nil
}
