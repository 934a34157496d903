package admin

import (
	"errors"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// resource is the skeleton every team-owned record kind (delivery groups,
// mailboxes, webhooks, providers, domains) shares on its item routes:
// resolve {id} to one of the caller's records (another team's answers 404
// like a missing one), answer it with its version as ETag, and check
// If-Match before a write so the store write is conditional on it. The
// store keeps the matching rules for the records themselves
// (store/team_records.go: another team's record is ErrNotFound, a stale
// version ErrConflict); this holds the HTTP half, which each kind used to
// repeat. What differs between kinds — the view, the store calls, the
// managed account's refusals — is given as functions.
type resource[T any] struct {
	// what names the kind in answers and logs ("delivery group").
	what string
	// prefix is the kind's ID prefix: an {id} without it is a 404
	// without a store read.
	prefix string
	// path is the collection's URL path; a 201 answer's Location is
	// path + "/" + ID.
	path string
	// find reads one record of the team (store.ErrNotFound if missing
	// or another team's).
	find func(teamID, id string) (*T, error)
	// ident returns a record's ID and version (the ETag).
	ident func(*T) (id string, version int64)
	// view is the public shape of a record; c is the request it answers
	// (for views that read more of the team, like a group's members).
	view func(c *call, t *T) (any, error)
	// remove deletes a record, conditional on version ver (0: any).
	remove func(teamID, id string, ver int64) error
	// logAttrs are the log attributes naming a record.
	logAttrs func(*T) []any
	// guard, when set, refuses a write ("edited", "deleted") to a record
	// before its If-Match is checked: the managed account, which no
	// If-Match makes writable.
	guard func(c *call, cur *T, action string) error
}

// load resolves {id} to one of the caller's records.
func (r *resource[T]) load(c *call) (*T, error) {
	id, ok := c.pathID(r.prefix)
	if !ok {
		return nil, httpapi.ErrNotFound(r.what)
	}
	t, err := r.find(c.team(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, httpapi.ErrNotFound(r.what)
	}
	return t, err
}

// loadForWrite loads the record a write will change and checks the
// request's If-Match against it; ver is the version the store write must
// be conditional on (0: unconditional).
func (r *resource[T]) loadForWrite(c *call, action string) (cur *T, ver int64, err error) {
	if cur, err = r.load(c); err != nil {
		return nil, 0, err
	}
	if r.guard != nil {
		if err := r.guard(c, cur, action); err != nil {
			return nil, 0, err
		}
	}
	_, v := r.ident(cur)
	if ver, err = ifMatch(c.r, v); err != nil {
		return nil, 0, err
	}
	return cur, ver, nil
}

// answer writes one record with its ETag, and on 201 its Location.
func (r *resource[T]) answer(c *call, status int, t *T) error {
	body, err := r.view(c, t)
	if err != nil {
		return err
	}
	id, ver := r.ident(t)
	if status == http.StatusCreated {
		c.w.Header().Set("Location", r.path+"/"+id)
	}
	c.w.Header().Set("ETag", etag(ver))
	c.ok(status, body)
	return nil
}

// logged logs that a record was created, updated or deleted.
func (r *resource[T]) logged(c *call, action string, t *T) {
	c.s.log.Info(r.what+" "+action, append([]any{"request_id", c.reqID}, r.logAttrs(t)...)...)
}

// get is GET …/{id}.
func (r *resource[T]) get(c *call) error {
	t, err := r.load(c)
	if err != nil {
		return err
	}
	return r.answer(c, http.StatusOK, t)
}

// del is DELETE …/{id}: {"id":…,"deleted":true}.
func (r *resource[T]) del(c *call) error {
	cur, ver, err := r.loadForWrite(c, "deleted")
	if err != nil {
		return err
	}
	id, _ := r.ident(cur)
	if err := r.remove(c.team(), id, ver); err != nil {
		return storeErr(err, r.what)
	}
	r.logged(c, "deleted", cur)
	c.ok(http.StatusOK, map[string]any{"id": id, "deleted": true})
	return nil
}

// patch is PATCH …/{id}: If-Match, then the body decoded by decode. An
// empty body changes nothing and keeps the version (the current record is
// answered); otherwise update writes in, conditional on ver, and returns
// the new record. Validation errors from update pass through; the store's
// sentinels become 404 / 409.
func patch[T, I any](c *call, r *resource[T], decode func(*httpapi.Object) (I, error),
	update func(cur *T, ver int64, in I) (*T, error)) error {
	cur, ver, err := r.loadForWrite(c, "edited")
	if err != nil {
		return err
	}
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	in, err := decode(o)
	if err != nil {
		return err
	}
	t := cur
	if !o.Empty() {
		if t, err = update(cur, ver, in); err != nil {
			return storeErr(err, r.what)
		}
		r.logged(c, "updated", t)
	}
	return r.answer(c, http.StatusOK, t)
}

// resources are the Server's record kinds with the common skeleton.
type resources struct {
	groups    *resource[store.DeliveryGroup]
	mailboxes *resource[store.Mailbox]
	webhooks  *resource[store.Webhook]
	providers *resource[store.Provider]
	domains   *resource[store.Domain]
}

// newResources describes s's record kinds. The store calls are closures,
// not method values, so that s.st is read when a request runs (as
// everywhere else in the Server), not while it is built.
func newResources(s *Server) resources {
	return resources{
		groups: &resource[store.DeliveryGroup]{
			what: "delivery group", prefix: store.PrefixGroup, path: "/api/v1/delivery-groups",
			find:  func(t, id string) (*store.DeliveryGroup, error) { return s.st.Group(t, id) },
			ident: func(g *store.DeliveryGroup) (string, int64) { return g.ID, g.Version },
			view: func(c *call, g *store.DeliveryGroup) (any, error) {
				members, err := s.groupMembers(c.team())
				if err != nil {
					return nil, err
				}
				return groupView(g, members), nil
			},
			logAttrs: func(g *store.DeliveryGroup) []any { return []any{"group", g.ID} },
			// DELETE has its own answer (deleteGroup); remove is unused.
		},
		mailboxes: &resource[store.Mailbox]{
			what: "mailbox", prefix: store.PrefixMailbox, path: "/api/v1/mailboxes",
			find:     func(t, id string) (*store.Mailbox, error) { return s.st.TeamMailbox(t, id) },
			ident:    func(m *store.Mailbox) (string, int64) { return m.ID, m.Version },
			view:     func(_ *call, m *store.Mailbox) (any, error) { return mailboxView(m), nil },
			remove:   func(t, id string, ver int64) error { return s.st.DeleteMailbox(t, id, ver) },
			logAttrs: func(m *store.Mailbox) []any { return []any{"mailbox", m.ID} },
		},
		webhooks: &resource[store.Webhook]{
			what: "webhook", prefix: store.PrefixWebhook, path: "/api/v1/webhooks",
			find:  func(t, id string) (*store.Webhook, error) { return s.st.Webhook(t, id) },
			ident: func(w *store.Webhook) (string, int64) { return w.ID, w.Version },
			view:  func(_ *call, w *store.Webhook) (any, error) { return webhookView(w), nil },
			remove: func(teamID, id string, ver int64) error {
				if err := s.st.DeleteWebhook(teamID, id, ver); err != nil {
					return err
				}
				// The dispatcher caches each team's webhooks.
				s.hooks.Invalidate()
				return nil
			},
			logAttrs: func(w *store.Webhook) []any { return []any{"webhook", w.ID} },
		},
		providers: &resource[store.Provider]{
			what: "provider", prefix: store.PrefixProvider, path: "/api/v1/providers",
			find:     func(t, id string) (*store.Provider, error) { return s.st.TeamProvider(t, id) },
			ident:    func(p *store.Provider) (string, int64) { return p.ID, p.Version },
			view:     func(_ *call, p *store.Provider) (any, error) { return s.providerView(p), nil },
			remove:   func(t, id string, ver int64) error { return s.st.DeleteProvider(t, id, ver) },
			logAttrs: func(p *store.Provider) []any { return []any{"provider", p.ID} },
			guard: func(c *call, p *store.Provider, action string) error {
				switch {
				case !p.Managed:
					return nil
				case action == "edited":
					return managedPatchErr(c)
				}
				return errManaged(action)
			},
		},
		domains: &resource[store.Domain]{
			what: "domain", prefix: store.PrefixDomain, path: "/api/v1/domains",
			find:  func(t, id string) (*store.Domain, error) { return s.st.Domain(t, id) },
			ident: func(d *store.Domain) (string, int64) { return d.ID, d.Version },
			view: func(c *call, d *store.Domain) (any, error) {
				spf, err := s.spfIncludes(c.team())
				if err != nil {
					return nil, err
				}
				return domainView(d, spf), nil
			},
			remove:   func(t, id string, ver int64) error { return s.st.DeleteDomain(t, id, ver) },
			logAttrs: func(d *store.Domain) []any { return []any{"domain_id", d.ID, "domain", d.Domain} },
		},
	}
}
