package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// Filter values accepted by GET /providers.
var (
	providerStatuses = state.ProviderStatuses()
	providerTypes    = []string{store.TypeManagedSES, store.TypeSMTP, store.TypeSES, store.TypeGmail, store.TypeOutlook}
)

// maxReasonLen bounds status_reason, which may quote an upstream reply.
const maxReasonLen = 500

func (s *Server) listProviders(c *call) error {
	q := c.r.URL.Query()
	status, typ := q.Get("status"), q.Get("type")
	if status != "" && !containsStr(providerStatuses, state.Provider(status)) {
		return httpapi.ErrInvalidParam("status", "status must be one of: %s", state.Join(providerStatuses, ", "))
	}
	if typ != "" && !containsStr(providerTypes, typ) {
		return httpapi.ErrInvalidParam("type", "type must be one of: %s", strings.Join(providerTypes, ", "))
	}
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Providers(c.team())
	if err != nil {
		return err
	}
	matched := all[:0:0]
	for _, p := range all {
		if (status == "" || p.Status == state.Provider(status)) && (typ == "" || p.Type == typ) {
			matched = append(matched, p)
		}
	}
	pageItems, pag := paginate(matched, func(p *store.Provider) string { return p.ID }, pg)
	out := make([]providerItem, 0, len(pageItems))
	for _, p := range pageItems {
		out = append(out, s.providerView(p))
	}
	c.list(out, pag)
	return nil
}

func (s *Server) createProvider(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	in, err := decodeProvider(o)
	if err != nil {
		return err
	}
	typ, err := checkType(in)
	if err != nil {
		return err
	}
	now := s.now()
	p := &store.Provider{
		ID: store.NewID(store.PrefixProvider), TeamID: c.team(), Type: typ,
		Status: state.ProviderActive, CreatedAt: now, UpdatedAt: now,
	}
	// From reading who uses which tracking domain to the commit: see
	// trackMu. A create that names none cannot take one, and must not
	// wait for every other team's create: holding the lock across each
	// commit kept concurrent creates from sharing one.
	if in.tracking.Set && strings.TrimSpace(in.tracking.V) != "" {
		s.trackMu.Lock()
		defer s.trackMu.Unlock()
	}
	pol := s.providerPolicy()
	if pol.tracking, err = s.trackingJudge(c.team(), in, nil); err != nil {
		return err
	}
	v := &httpapi.Validator{}
	applyProvider(in, p, v, true, s.sealSecrets(in), pol)
	// From the group check to the commit: see refMu.
	s.refMu.RLock()
	defer s.refMu.RUnlock()
	if err := s.checkGroupRef(c.team(), in, v); err != nil {
		return err
	}
	if err := v.Err(); err != nil {
		return err
	}

	defer s.providerLocks.lock(c.team())()
	if err := s.checkProviderRoom(c.team()); err != nil {
		return err
	}
	// checkProviderRoom answers most overflows early; the store counts
	// again inside the write, which is what holds across cluster nodes.
	limit, err := s.providerLimit(c.team())
	if err != nil {
		return err
	}
	if err := s.st.CreateOwnProvider(p, limit); errors.Is(err, store.ErrLimit) {
		return providerLimitExceeded(limit)
	} else if err != nil {
		return err
	}
	s.log.Info("provider created", "request_id", c.reqID, "provider", p.ID, "type", p.Type, "team", p.TeamID)
	return s.res.providers.answer(c, http.StatusCreated, p)
}

// sealSecrets encrypts new write-only secrets once, before the store
// transaction (which may run its function more than once).
func (s *Server) sealSecrets(in *providerInput) sealedSecrets {
	seal := func(o httpapi.Opt[string]) []byte {
		if !o.Set || o.Null || o.V == "" {
			return nil
		}
		return s.opts.Sealer.Seal(o.V)
	}
	return sealedSecrets{smtpPassword: seal(in.password), sesSecret: seal(in.ses.secret)}
}

// checkProviderRoom answers limit_exceeded when the team already has as
// many own providers as it may. The caller holds the team's providerLocks
// entry until it created the provider, so concurrent creates cannot both
// take the last place. It reads only that team's providers.
func (s *Server) checkProviderRoom(teamID string) error {
	limit, err := s.providerLimit(teamID)
	if err != nil {
		return err
	}
	existing, err := s.st.Providers(teamID)
	if err != nil {
		return err
	}
	own := 0
	for _, e := range existing {
		if !e.Managed {
			own++
		}
	}
	if own >= limit {
		return providerLimitExceeded(limit)
	}
	return nil
}

// providerLimitExceeded is the answer to a create past the team's cap.
func providerLimitExceeded(limit int) error {
	return httpapi.ErrLimitExceeded("this team may add " + strconv.Itoa(limit) +
		" providers of its own (the managed account does not count); delete one or request an increase")
}

// providerLimit is the team's own-provider cap: its override or the
// operator default.
func (s *Server) providerLimit(teamID string) (int, error) {
	t, err := s.st.Team(teamID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	if t != nil && t.ProviderLimit != nil {
		return *t.ProviderLimit, nil
	}
	return s.opts.Providers.Limit, nil
}

// storeErr maps the store's sentinel errors of a provider write.
func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return httpapi.ErrNotFound(what)
	case errors.Is(err, store.ErrConflict):
		return httpapi.ErrConflict(what + " was modified concurrently; fetch it again and retry")
	}
	return err
}

func errManaged(action string) error {
	return httpapi.ErrValidation("id", httpapi.FieldNotEditable, "the managed Amazon SES account cannot be "+action)
}

// managedPatchErr answers a PATCH of the managed account. Asking it to
// join a delivery group gets its own answer naming group_id (SPEC §2: it
// cannot join one), because "cannot be edited" would not tell a client
// that moving it into a group is specifically unsupported.
func managedPatchErr(c *call) error {
	if o, err := httpapi.ReadBody(c.r); err == nil && o.Has("group_id") && !o.IsNull("group_id") {
		if g, err := httpapi.Field[string](o, "group_id"); err == nil && g.V != "" {
			return httpapi.ErrValidation("group_id", httpapi.FieldNotSupported, "the managed Amazon SES account cannot join a delivery group")
		}
	}
	return errManaged("edited")
}

// checkGroupRef adds a 422 for a group_id that is not a delivery group
// of the team; another team's group is as unknown as a missing one.
func (s *Server) checkGroupRef(teamID string, in *providerInput, v *httpapi.Validator) error {
	if !in.group.Set || in.group.Null || in.group.V == "" {
		return nil
	}
	id := in.group.V
	if !store.ValidID(store.PrefixGroup, id) {
		v.Add("group_id", httpapi.FieldUnknownRef, "unknown delivery group "+strconv.Quote(id))
		return nil
	}
	_, err := s.st.Group(teamID, id)
	if errors.Is(err, store.ErrNotFound) {
		v.Add("group_id", httpapi.FieldUnknownRef, "unknown delivery group "+strconv.Quote(id))
		return nil
	}
	return err
}

// patchProvider edits an own provider (the managed account answers 422
// whatever the If-Match, see the resource's guard).
func (s *Server) patchProvider(c *call) error {
	return patch(c, s.res.providers, decodeProvider, func(cur *store.Provider, ver int64, in *providerInput) (*store.Provider, error) {
		// From reading who uses which tracking domain to the commit: see
		// trackMu (taken before refMu, as createProvider does). cur is
		// re-read under the lock, so that the judge covers the tracking
		// domain the store function will see.
		s.trackMu.Lock()
		defer s.trackMu.Unlock()
		cur, err := s.st.TeamProvider(c.team(), cur.ID)
		if err != nil {
			return nil, err
		}
		// From the group check to the commit: see refMu. The check runs
		// once, outside the store function, which may run more than once.
		s.refMu.RLock()
		defer s.refMu.RUnlock()
		pre := &httpapi.Validator{}
		if err := s.checkGroupRef(c.team(), in, pre); err != nil {
			return nil, err
		}
		sealed, pol := s.sealSecrets(in), s.providerPolicy()
		if pol.tracking, err = s.trackingJudge(c.team(), in, cur); err != nil {
			return nil, err
		}
		now := s.now()
		return s.st.UpdateProvider(c.team(), cur.ID, ver, func(p *store.Provider) error {
			if p.Managed {
				return errManaged("edited")
			}
			v := pre.Clone()
			applyProvider(in, p, v, false, sealed, pol)
			if err := v.Err(); err != nil {
				return err
			}
			p.UpdatedAt = now
			return nil
		})
	})
}

func (s *Server) activateProvider(c *call) error   { return s.setStatus(c, state.ProviderActive) }
func (s *Server) deactivateProvider(c *call) error { return s.setStatus(c, state.ProviderInactive) }

// errUnchanged aborts a store write that would not change anything.
var errUnchanged = errors.New("unchanged")

// setStatus switches a provider on or off. It is allowed on the managed
// account (a team may pause it). Activating is also the manual recovery
// from "error", so it clears the reason. A no-op skips the write, so the
// version (the ETag, and the scheduler's pool key) only moves on change.
func (s *Server) setStatus(c *call, target state.Provider) error {
	cur, err := s.res.providers.load(c)
	if err != nil {
		return err
	}
	now := s.now()
	p, err := s.st.UpdateProvider(c.team(), cur.ID, 0, func(p *store.Provider) error {
		if target == state.ProviderActive && p.Held != nil {
			return heldRefusal(p)
		}
		if p.Held != nil {
			return errUnchanged // inactive already; its reason stays the hold's
		}
		if target == state.ProviderActive && p.Status == state.ProviderPending {
			return httpapi.ErrValidation("id", httpapi.FieldInvalid, "this account has no usable token; reconnect it instead")
		}
		if p.Status == target && p.StatusReason == "" {
			return errUnchanged
		}
		p.Status, p.StatusReason, p.UpdatedAt = target, "", now
		if target == state.ProviderActive {
			// Messages that saw this provider fail authentication may
			// try it again (relay compares against this time).
			p.ActivatedAt = now
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		p, err = cur, nil
	}
	if err != nil {
		return storeErr(err, "provider")
	}
	if p != cur {
		s.log.Info("provider status changed", "request_id", c.reqID, "provider", p.ID, "status", p.Status)
	}
	return s.res.providers.answer(c, http.StatusOK, p)
}

// testResult is the answer of POST /providers/{id}/test.
type testResult struct {
	Success   bool   `json:"success"`
	Message   string `json:"message"`
	LatencyMS int64  `json:"latency_ms"`
	TestedAt  string `json:"tested_at"`
	// Deferred is true when the upstream timed out or, for an SMTP
	// provider, answered the opening with a temporary (4xx) refusal:
	// inconclusive, the provider's status was left as it was.
	Deferred bool `json:"deferred"`
}

func (s *Server) testProvider(c *call) error {
	cur, err := s.res.providers.load(c)
	if err != nil {
		return err
	}
	if cur.Managed {
		return errManaged("tested")
	}
	if s.opts.Providers.Tester == nil {
		return httpapi.ErrUnavailable("provider testing is not available")
	}
	ctx, cancel := context.WithTimeout(c.r.Context(), s.opts.Providers.TestTimeout)
	defer cancel()
	start := time.Now()
	tr := s.opts.Providers.Tester.TestProvider(ctx, cur)
	latency := time.Since(start)
	testedAt := s.now()

	res := testResult{Success: tr.Outcome == provhealth.OK, Deferred: tr.Outcome == provhealth.Deferred,
		LatencyMS: latency.Milliseconds(), TestedAt: rfc3339(testedAt)}
	switch {
	case tr.Message != "":
		res.Message = tr.Message
	case res.Success:
		res.Message = "connection and authentication succeeded"
	default:
		res.Message = "connection failed"
	}
	res.Message = truncate(res.Message, maxReasonLen)

	_, err = s.st.UpdateProvider(c.team(), cur.ID, 0, func(p *store.Provider) error {
		p.LastTestedAt = &testedAt
		// The verdict is about the settings that were tested; if the
		// provider was edited meanwhile it says nothing about the new
		// ones, so only the timestamp is recorded.
		if p.Version != cur.Version {
			return nil
		}
		// A test reports on the settings; whether the provider is in
		// rotation is the team's choice (activate/deactivate). So the
		// verdict moves only between active and error, the two states of
		// a provider the team has enabled: an inactive (or pending) one
		// stays as it is whatever the outcome.
		switch {
		case res.Success && p.Status == state.ProviderError:
			p.Status, p.StatusReason, p.ActivatedAt = state.ProviderActive, "", testedAt
		case !res.Success && !res.Deferred && (p.Status == state.ProviderActive || p.Status == state.ProviderError):
			p.Status, p.StatusReason = state.ProviderError, res.Message
		}
		return nil
	})
	if err != nil {
		return storeErr(err, "provider")
	}
	s.log.Info("provider tested", "request_id", c.reqID, "provider", cur.ID, "success", res.Success,
		"deferred", res.Deferred, "latency_ms", res.LatencyMS)
	c.ok(http.StatusOK, res)
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the JSON stays valid UTF-8.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// etag is the weak validator of a team-owned record: its store version.
func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch checks If-Match against the current version and returns the
// version the store write must be conditional on (0: unconditional). A
// weak comparison is used, which is safe here because the version changes
// on every write. "*" matches any existing resource.
func ifMatch(r *http.Request, cur int64) (int64, error) {
	h := r.Header.Get("If-Match")
	if strings.TrimSpace(h) == "" {
		return 0, nil
	}
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return 0, nil
		}
		tag = strings.TrimPrefix(tag, "W/")
		if n, err := strconv.ParseInt(strings.Trim(tag, `"`), 10, 64); err == nil && n == cur {
			return cur, nil
		}
	}
	return 0, httpapi.ErrConflict("If-Match does not match the current version " + etag(cur) + "; fetch the resource again")
}
