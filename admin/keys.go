package admin

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// keyItem is the public shape of an API key. The secret is never part of
// it (only create returns it, once), nor is the hash.
type keyItem struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Type        string       `json:"type"`
	Prefix      string       `json:"prefix"`
	Permissions []string     `json:"permissions"` // root keys; null for sending keys
	SendScope   *store.Scope `json:"send_scope"`  // sending keys; null for root keys
	Status      string       `json:"status"`      // active | revoked
	CreatedAt   string       `json:"created_at"`
	RevokedAt   *string      `json:"revoked_at"`
	LastUsedAt  *string      `json:"last_used_at"`
	RotatedAt   *string      `json:"rotated_at"`
	// FailureReports: see store.APIKey.FailureReports.
	FailureReports bool `json:"failure_reports"`
	// PreviousKeyExpiresAt is when the secret the last rotation replaced
	// stops authenticating; null when no previous secret is valid.
	PreviousKeyExpiresAt *string `json:"previous_key_expires_at"`
}

// createdKey is the create answer: the item plus the secret, shown once.
type createdKey struct {
	keyItem
	Key string `json:"key"`
}

func keyView(k *store.APIKey, now time.Time) keyItem {
	it := keyItem{
		ID: k.ID, Name: k.Name, Type: k.Type, Prefix: k.Prefix, Status: "active",
		CreatedAt: rfc3339(k.CreatedAt), RevokedAt: rfc3339p(k.RevokedAt), LastUsedAt: rfc3339p(k.LastUsedAt),
		RotatedAt: rfc3339p(k.RotatedAt), FailureReports: k.FailureReports,
	}
	if k.Active() && k.InGrace(now) {
		it.PreviousKeyExpiresAt = rfc3339p(k.PrevExpiresAt)
	}
	if !k.Active() {
		it.Status = "revoked"
	}
	if k.Type == store.KeyRoot {
		it.Permissions = append([]string{}, k.Permissions...)
	} else {
		sc := k.SendScope
		it.SendScope = &sc
	}
	return it
}

// keyPrefixLen is how much of a secret is kept in clear to recognise it
// in lists ("smx_root_AbC"): the type prefix plus three characters, far
// too little to help guess the remaining 40.
const keyPrefixLen = 12

func (s *Server) createKey(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	if err := o.Allow("name", "type", "permissions", "send_scope", "failure_reports"); err != nil {
		return err
	}
	name, err := httpapi.Field[string](o, "name")
	if err != nil {
		return err
	}
	typ, err := httpapi.Field[string](o, "type")
	if err != nil {
		return err
	}
	perms, err := httpapi.Field[[]string](o, "permissions")
	if err != nil {
		return err
	}
	reports, err := httpapi.Field[bool](o, "failure_reports")
	if err != nil {
		return err
	}
	scopeObj, err := o.Child("send_scope")
	if err != nil {
		return err
	}
	var scopeIn *scopeInput
	if scopeObj != nil {
		if scopeIn, err = decodeScope(scopeObj); err != nil {
			return err
		}
	}

	// From the scope check to the commit: see refMu.
	s.refMu.RLock()
	defer s.refMu.RUnlock()
	v := &httpapi.Validator{}
	k := &store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: c.team(), CreatedAt: s.now()}
	if !name.Set || name.Null {
		v.Add("name", httpapi.FieldRequired, "name is required")
	} else {
		k.Name = httpapi.CheckName(v, "name", name.V, 100)
	}
	// Without a type the key is a sending key: the least privileged kind.
	k.Type = store.KeySending
	if typ.Set && !typ.Null {
		k.Type = typ.V
	}
	switch k.Type {
	case store.KeyRoot:
		if scopeObj != nil {
			v.Add("send_scope", httpapi.FieldInvalid, "send_scope applies to sending keys only")
		}
		if reports.Set && !reports.Null && reports.V {
			v.Add("failure_reports", httpapi.FieldInvalid, "failure_reports applies to sending keys only")
		}
		if k.Permissions, err = s.checkPermissions(c, perms, v); err != nil {
			return err
		}
	case store.KeySending:
		if perms.Set && !perms.Null {
			v.Add("permissions", httpapi.FieldInvalid, "permissions apply to root keys only")
		}
		k.SendScope = store.Scope{Type: "all"}
		if scopeIn != nil {
			k.SendScope = s.checkScope(c.team(), scopeIn, v)
		}
		k.FailureReports = reports.Set && !reports.Null && reports.V
	default:
		v.Add("type", httpapi.FieldInvalid, `type must be "sending" or "root"`)
	}
	if err := v.Err(); err != nil {
		return err
	}

	prefix := store.SecretPrefixSending
	if k.Type == store.KeyRoot {
		prefix = store.SecretPrefixRoot
	}
	secret := store.NewSecret(prefix)
	k.Prefix = secret[:keyPrefixLen]
	k.Hash = store.HashSecret(secret)
	if err := s.st.CreateKey(k); err != nil {
		return err
	}
	s.log.Info("api key created", "request_id", c.reqID, "key", k.ID, "type", k.Type, "by", c.key.ID)
	c.w.Header().Set("Location", "/api/v1/api-keys/"+k.ID)
	c.ok(http.StatusCreated, createdKey{keyItem: keyView(k, s.now()), Key: secret})
	return nil
}

// checkPermissions validates a root key's permission list. Absent means
// "*" (full access, as a first root key has); an explicit empty list is
// refused because such a key could do nothing. A key can only grant what
// it holds: otherwise key.create alone would escalate to "*".
func (s *Server) checkPermissions(c *call, perms httpapi.Opt[[]string], v *httpapi.Validator) ([]string, error) {
	if !perms.Set || perms.Null {
		if !canGrant(c.key, "*") {
			return nil, &httpapi.Error{Status: http.StatusForbidden, Code: httpapi.CodeForbidden, Param: "permissions",
				Message: `this key cannot grant "*"; list the permissions the new key needs`}
		}
		return []string{"*"}, nil
	}
	if len(perms.V) == 0 {
		v.Add("permissions", httpapi.FieldRequired, "permissions must list at least one permission")
		return nil, nil
	}
	var out []string
	for i, p := range perms.V {
		f := "permissions[" + strconv.Itoa(i) + "]"
		if expandPermission(p) == nil {
			v.Add(f, httpapi.FieldInvalid, "unknown permission "+strconv.Quote(p)+`; use e.g. "provider.read", "provider.*" or "*"`)
			continue
		}
		if !canGrant(c.key, p) {
			return nil, &httpapi.Error{Status: http.StatusForbidden, Code: httpapi.CodeForbidden, Param: f,
				Message: "this key cannot grant " + strconv.Quote(p) + " because it does not hold it"}
		}
		if !containsStr(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// scopeInput is a decoded send_scope object.
type scopeInput struct {
	typ       httpapi.Opt[string]
	providers httpapi.Opt[[]string]
	groups    httpapi.Opt[[]string]
}

func decodeScope(o *httpapi.Object) (*scopeInput, error) {
	if err := o.Allow("type", "provider_public_ids", "group_public_ids"); err != nil {
		return nil, err
	}
	in := &scopeInput{}
	var err error
	if in.typ, err = httpapi.Field[string](o, "type"); err != nil {
		return nil, err
	}
	if in.providers, err = httpapi.Field[[]string](o, "provider_public_ids"); err != nil {
		return nil, err
	}
	if in.groups, err = httpapi.Field[[]string](o, "group_public_ids"); err != nil {
		return nil, err
	}
	return in, nil
}

// checkScope validates a send scope (of a sending key or a mailbox)
// against the team's providers and delivery groups. Naming a provider or
// group of another team gets the same answer as a non-existent one, so
// scopes cannot probe other tenants. Callers hold refMu shared until the
// scope is stored, so a group cannot be deleted in between.
func (s *Server) checkScope(teamID string, in *scopeInput, v *httpapi.Validator) store.Scope {
	sc := store.Scope{Type: in.typ.V}
	switch sc.Type {
	case "all":
		if len(in.providers.V) > 0 || len(in.groups.V) > 0 {
			v.Add("send_scope.type", httpapi.FieldInvalid, `a scope of type "all" takes no provider or group IDs`)
		}
	case "providers":
		if len(in.groups.V) > 0 {
			v.Add("send_scope.group_public_ids", httpapi.FieldInvalid, `group_public_ids belongs to a scope of type "group"`)
		}
		if len(in.providers.V) == 0 {
			v.Add("send_scope.provider_public_ids", httpapi.FieldRequired, "provider_public_ids must list at least one provider")
		}
		sc.ProviderPublicIDs = scopeRefs(v, "send_scope.provider_public_ids", "provider", store.PrefixProvider, in.providers.V,
			func(id string) error { _, err := s.st.TeamProvider(teamID, id); return err })
	case "group":
		if len(in.providers.V) > 0 {
			v.Add("send_scope.provider_public_ids", httpapi.FieldInvalid, `provider_public_ids belongs to a scope of type "providers"`)
		}
		if len(in.groups.V) == 0 {
			v.Add("send_scope.group_public_ids", httpapi.FieldRequired, "group_public_ids must list at least one delivery group")
		}
		sc.GroupPublicIDs = scopeRefs(v, "send_scope.group_public_ids", "delivery group", store.PrefixGroup, in.groups.V,
			func(id string) error { _, err := s.st.Group(teamID, id); return err })
	case "":
		v.Add("send_scope.type", httpapi.FieldRequired, `send_scope.type is required: "all", "providers" or "group"`)
	default:
		v.Add("send_scope.type", httpapi.FieldInvalid, `send_scope.type must be "all", "providers" or "group"`)
	}
	return sc
}

// scopeRefs checks the IDs a send scope lists under field: each must be
// of the kind prefix names and be the team's (exists answers nil), or it
// is an unknown_reference; repeats are dropped.
func scopeRefs(v *httpapi.Validator, field, what, prefix string, ids []string, exists func(id string) error) []string {
	var out []string
	for i, id := range ids {
		if !store.ValidID(prefix, id) || exists(id) != nil {
			v.Add(field+"["+strconv.Itoa(i)+"]", httpapi.FieldUnknownRef, "unknown "+what+" "+strconv.Quote(id))
			continue
		}
		if !containsStr(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func (s *Server) listKeys(c *call) error {
	typ := c.r.URL.Query().Get("type")
	if typ != "" && typ != store.KeyRoot && typ != store.KeySending {
		return httpapi.ErrInvalidParam("type", `type must be "root" or "sending"`)
	}
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Keys(c.team())
	if err != nil {
		return err
	}
	matched := all[:0:0]
	for _, k := range all {
		if typ == "" || k.Type == typ {
			matched = append(matched, k)
		}
	}
	items, pag := paginate(matched, func(k *store.APIKey) string { return k.ID }, pg)
	out := make([]keyItem, 0, len(items))
	for _, k := range items {
		out = append(out, keyView(k, s.now()))
	}
	c.list(out, pag)
	return nil
}

func (s *Server) getKey(c *call) error {
	id, ok := c.pathID(store.PrefixKey)
	if !ok {
		return httpapi.ErrNotFound("API key")
	}
	k, err := s.st.Key(id)
	if errors.Is(err, store.ErrNotFound) || err == nil && k.TeamID != c.team() {
		return httpapi.ErrNotFound("API key")
	}
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, keyView(k, s.now()))
	return nil
}

// revokeKey revokes a key. It takes effect on the key's next use because
// every request and SMTP transaction re-reads the key. A key may revoke
// itself (a deliberate "log out"); the answer to that request still goes
// out, its next request gets 401. Revoking twice keeps the first time.
func (s *Server) revokeKey(c *call) error {
	id, ok := c.pathID(store.PrefixKey)
	if !ok {
		return httpapi.ErrNotFound("API key")
	}
	now := s.now()
	k, err := s.st.UpdateKey(c.team(), id, func(k *store.APIKey) error {
		if k.RevokedAt == nil {
			k.RevokedAt = &now
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return httpapi.ErrNotFound("API key")
	}
	if err != nil {
		return err
	}
	s.log.Info("api key revoked", "request_id", c.reqID, "key", k.ID, "by", c.key.ID)
	c.ok(http.StatusOK, keyView(k, s.now()))
	return nil
}

// permKeyUpdate guards rotation, which changes a key without creating or
// revoking one.
const permKeyUpdate = "key.update"

// maxRotationGrace bounds a rotation's grace period asked for in the
// body: a week is ample to roll a secret out, and a replaced secret
// should not live on for long.
const maxRotationGrace = 7 * 24 * time.Hour

// rotateKey is POST /api-keys/{id}/rotate with an optional
// {"grace_period_seconds": n}: the key gets a new secret, returned once in
// "key" as on create; the old secret keeps authenticating (SMTP AUTH and
// HTTP Bearer alike) for the grace period (default [keys] rotation_grace;
// 0 ends it at once), so clients can move over without an outage. The
// key keeps its ID, name, permissions and scope. Rotating again during a
// grace period ends the earlier previous secret at once. A revoked key
// cannot be rotated (409).
func (s *Server) rotateKey(c *call) error {
	id, ok := c.pathID(store.PrefixKey)
	if !ok {
		return httpapi.ErrNotFound("API key")
	}
	o, err := readOptionalBody(c.r)
	if err != nil {
		return err
	}
	if err := o.Allow("grace_period_seconds"); err != nil {
		return err
	}
	g, err := httpapi.Field[int](o, "grace_period_seconds")
	if err != nil {
		return err
	}
	grace := s.opts.KeyRotationGrace
	if g.Set && !g.Null {
		if g.V < 0 || time.Duration(g.V)*time.Second > maxRotationGrace {
			v := &httpapi.Validator{}
			v.Add("grace_period_seconds", httpapi.FieldOutOfRange, "grace_period_seconds must be between 0 and "+
				strconv.Itoa(int(maxRotationGrace/time.Second)))
			return v.Err()
		}
		grace = time.Duration(g.V) * time.Second
	}
	cur, err := s.st.Key(id)
	if errors.Is(err, store.ErrNotFound) || err == nil && cur.TeamID != c.team() {
		return httpapi.ErrNotFound("API key")
	}
	if err != nil {
		return err
	}
	prefix := store.SecretPrefixSending
	if cur.Type == store.KeyRoot {
		prefix = store.SecretPrefixRoot
		// The new secret is the target key's power: a key may only take
		// it over when it could have created that key (checkPermissions'
		// rule), or key.update alone would escalate to "*".
		if !canGrantAll(c.key, cur.Permissions) {
			return &httpapi.Error{Status: http.StatusForbidden, Code: httpapi.CodeForbidden,
				Message: "this key cannot rotate a root key that holds permissions it does not hold"}
		}
	}
	secret := store.NewSecret(prefix)
	now := s.now()
	k, err := s.st.RotateKey(c.team(), id, store.HashSecret(secret), secret[:keyPrefixLen], now, grace)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return httpapi.ErrNotFound("API key")
	case errors.Is(err, store.ErrConflict):
		return httpapi.ErrConflict("this API key has been revoked; create a new key instead of rotating it")
	case err != nil:
		return err
	}
	s.log.Info("api key rotated", "request_id", c.reqID, "key", k.ID, "grace", grace.String(), "by", c.key.ID)
	c.ok(http.StatusOK, createdKey{keyItem: keyView(k, now), Key: secret})
	return nil
}
