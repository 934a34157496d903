package admin

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// bearer extracts the token of an "Authorization: Bearer <token>" header.
// The scheme is case-insensitive (RFC 9110 §11.1).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// authenticate resolves the request's root key. Every request re-reads the
// key from the store, which is what makes revocation immediate.
func (s *Server) authenticate(r *http.Request) (*store.APIKey, error) {
	secret, ok := bearer(r)
	if !ok {
		return nil, errAuthRequired("missing Authorization header: send \"Authorization: Bearer <root key>\"")
	}
	// One authentication attempt (authAttempt): guesses at root keys
	// share the per-address failure limit with SMTP AUTH.
	var key *store.APIKey
	err := s.authAttempt(r, func() error {
		// Anything that does not look like one of our secrets is refused
		// without a store lookup, and without echoing it back.
		if !strings.HasPrefix(secret, store.SecretPrefixRoot) && !strings.HasPrefix(secret, store.SecretPrefixSending) {
			return errAuthRequired("invalid API key")
		}
		k, err := s.st.KeyBySecret(secret)
		if errors.Is(err, store.ErrNotFound) {
			return errAuthRequired("invalid API key")
		}
		if err != nil {
			return s.authUnavailable(r, err)
		}
		if !k.Active() {
			return errAuthRequired("API key has been revoked")
		}
		if k.Type != store.KeyRoot {
			return errForbidden("sending keys cannot use the Management API; use a root key")
		}
		key = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.touchKey(key.ID)
	return key, nil
}

// touchKey records a root key's last_used_at at most once a minute, off
// the request path (a write per request would cost an fsync each).
func (s *Server) touchKey(id string) {
	now := s.now()
	s.touchMu.Lock()
	if last, ok := s.touched[id]; ok && now.Sub(last) < time.Minute {
		s.touchMu.Unlock()
		return
	}
	if s.touched == nil {
		s.touched = map[string]time.Time{}
	}
	s.touched[id] = now
	s.touchMu.Unlock()
	go s.st.TouchKey(id, now.UTC())
}

// checkRate applies the per-key limit and always sets the X-RateLimit-*
// headers, so clients can pace themselves before they hit a 429.
func (s *Server) checkRate(w http.ResponseWriter, keyID string) error {
	res := s.limiter.take(keyID)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(res.remaining))
	// The Unix time (seconds) at which the window resets, as the hosted
	// API and most X-RateLimit-* APIs send it, rounded up so that a
	// client waiting until then finds it reset. Retry-After on a 429
	// carries the delta for clients that distrust their clock.
	end := s.now().Add(res.reset)
	resetAt := end.Unix()
	if end.Nanosecond() > 0 {
		resetAt++
	}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(resetAt, 10))
	if res.allowed {
		return nil
	}
	return &apiError{Status: http.StatusTooManyRequests, Code: codeRateLimited, Retryable: true,
		Message:    "rate limit of " + strconv.Itoa(res.limit) + " requests per " + s.opts.RateWindow.String() + " exceeded",
		RetryAfter: res.reset}
}

// Management permissions (SPEC §1). A root key holds a list of these, of
// "resource.*" wildcards, or "*".
const (
	permProviderRead   = "provider.read"
	permProviderCreate = "provider.create"
	permProviderUpdate = "provider.update"
	permProviderDelete = "provider.delete"
	permKeyRead        = "key.read"
	permKeyCreate      = "key.create"
	permKeyDelete      = "key.delete"
	permEmailRead      = "email.read"
	permGroupRead      = "group.read"
	permGroupCreate    = "group.create"
	permGroupUpdate    = "group.update"
	permGroupDelete    = "group.delete"
	permMailboxRead    = "mailbox.read"
	permMailboxCreate  = "mailbox.create"
	permMailboxUpdate  = "mailbox.update"
	permMailboxDelete  = "mailbox.delete"
)

// permissionCatalogue lists every resource and the actions that exist on
// it. Resources whose endpoints come in later issues are listed already so
// that keys created today can be granted them.
var permissionCatalogue = map[string][]string{
	"provider": {"read", "create", "update", "delete"},
	"key":      {"read", "create", "update", "delete"},
	"group":    {"read", "create", "update", "delete"},
	"mailbox":  {"read", "create", "update", "delete"},
	"domain":   {"read", "create", "update", "delete"},
	"webhook":  {"read", "create", "update", "delete"},
	"email":    {"read"},
}

// expandPermission returns the concrete permissions p stands for, or nil
// when p is not a known permission or wildcard.
func expandPermission(p string) []string {
	if p == "*" {
		var all []string
		for res, acts := range permissionCatalogue {
			for _, a := range acts {
				all = append(all, res+"."+a)
			}
		}
		slices.Sort(all)
		return all
	}
	res, act, ok := strings.Cut(p, ".")
	acts, known := permissionCatalogue[res]
	if !ok || !known {
		return nil
	}
	if act == "*" {
		out := make([]string, 0, len(acts))
		for _, a := range acts {
			out = append(out, res+"."+a)
		}
		return out
	}
	if slices.Contains(acts, act) {
		return []string{p}
	}
	return nil
}

// canGrant reports whether creator may hand out p: a key can only give
// what it holds itself, otherwise key.create alone would be a path to "*".
func canGrant(creator *store.APIKey, p string) bool {
	for _, c := range expandPermission(p) {
		if !creator.Allows(c) {
			return false
		}
	}
	return true
}

// rateLimiter is a fixed-window counter per management key (SPEC §3: 600
// requests per 60 s). A fixed window is what the X-RateLimit-Reset header
// describes exactly ("this many left until then"); a sliding log would cost
// memory per request for no benefit at this rate. The state is per process,
// which is right while one process owns the store.
type rateLimiter struct {
	mu        sync.Mutex
	limit     int
	window    time.Duration
	now       func() time.Time
	buckets   map[string]*rateBucket
	lastSweep time.Time
}

type rateBucket struct {
	start time.Time
	n     int
}

// rateResult is what the response headers report.
type rateResult struct {
	allowed   bool
	limit     int
	remaining int
	reset     time.Duration // until the current window ends
}

func newRateLimiter(limit int, window time.Duration, now func() time.Time) *rateLimiter {
	return &rateLimiter{limit: limit, window: window, now: now, buckets: map[string]*rateBucket{}}
}

// take counts one request of key and reports whether it is within the
// limit. Refused requests are not counted, so a client hammering through a
// 429 does not extend its own penalty beyond the window.
func (l *rateLimiter) take(key string) rateResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil || !now.Before(b.start.Add(l.window)) {
		b = &rateBucket{start: now}
		l.buckets[key] = b
	}
	res := rateResult{limit: l.limit, reset: b.start.Add(l.window).Sub(now)}
	if b.n >= l.limit {
		return res
	}
	b.n++
	res.allowed = true
	res.remaining = l.limit - b.n
	return res
}

// sweep drops expired windows once per window, so keys that stopped
// calling (or were revoked) do not accumulate forever.
func (l *rateLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < l.window {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if !now.Before(b.start.Add(l.window)) {
			delete(l.buckets, k)
		}
	}
}
