package admin

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// authenticate resolves the request's root key. Every request re-reads the
// key from the store, which is what makes revocation immediate.
func (s *Server) authenticate(r *http.Request) (*store.APIKey, error) {
	secret, ok := httpapi.Bearer(r)
	if !ok {
		return nil, httpapi.ErrAuthRequired("missing Authorization header: send \"Authorization: Bearer <root key>\"")
	}
	// One authentication attempt (httpapi.Attempt): guesses at root keys
	// share the per-address failure limit with SMTP AUTH.
	var key *store.APIKey
	limit := s.opts.HTTP.AuthAttempts
	if s.provenNode(r) {
		limit = nil // counted on the node the client asked (provenNode)
	}
	err := httpapi.Attempt(limit, r, func() error {
		// Anything that does not look like one of our secrets is refused
		// without a store lookup, and without echoing it back.
		if !strings.HasPrefix(secret, store.SecretPrefixRoot) && !strings.HasPrefix(secret, store.SecretPrefixSending) {
			return httpapi.ErrAuthRequired("invalid API key")
		}
		k, err := s.st.KeyBySecret(secret)
		if errors.Is(err, store.ErrNotFound) {
			return httpapi.ErrAuthRequired("invalid API key")
		}
		if err != nil {
			return httpapi.AuthUnavailable(s.log, r, err)
		}
		if !k.Active() {
			return httpapi.ErrAuthRequired("API key has been revoked")
		}
		if k.Type != store.KeyRoot {
			return httpapi.ErrForbidden("sending keys cannot use the Management API; use a root key")
		}
		key = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.used.Touch(key.ID, s.now()) // root keys' last_used_at, throttled
	return key, nil
}

// checkRate applies the per-key limit and always sets the X-RateLimit-*
// headers, so clients can pace themselves before they hit a 429.
func (s *Server) checkRate(w http.ResponseWriter, keyID string) error {
	res := s.limiter.Take(keyID)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
	// The Unix time (seconds) at which the window resets, as the hosted
	// API and most X-RateLimit-* APIs send it, rounded up so that a
	// client waiting until then finds it reset. Retry-After on a 429
	// carries the delta for clients that distrust their clock.
	end := s.now().Add(res.Reset)
	resetAt := end.Unix()
	if end.Nanosecond() > 0 {
		resetAt++
	}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(resetAt, 10))
	if res.Allowed {
		return nil
	}
	return &httpapi.Error{Status: http.StatusTooManyRequests, Code: httpapi.CodeRateLimited, Retryable: true,
		Message:    "rate limit of " + strconv.Itoa(res.Limit) + " requests per " + s.opts.HTTP.RateWindow.String() + " exceeded",
		RetryAfter: res.Reset}
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
	// suppression: the team's suppression list (SPEC §13).
	"suppression": {"read", "create", "delete"},
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
// canGrantAll reports whether holder could grant every one of perms (a
// root key's list; empty means "*").
func canGrantAll(holder *store.APIKey, perms []string) bool {
	if len(perms) == 0 {
		return canGrant(holder, "*")
	}
	for _, p := range perms {
		if !canGrant(holder, p) {
			return false
		}
	}
	return true
}

func canGrant(creator *store.APIKey, p string) bool {
	for _, c := range expandPermission(p) {
		if !creator.Allows(c) {
			return false
		}
	}
	return true
}
