package admin

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// Delivery group field bounds.
const (
	maxGroupName        = 100
	maxGroupDescription = 500
)

// groupItem is the public shape of a delivery group.
type groupItem struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Description *string `json:"description"`
	// ProviderIDs are the group's member providers, so a client sees
	// what a scope naming the group reaches without listing providers.
	ProviderIDs []string `json:"provider_ids"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
}

// groupMembers maps group IDs to their member providers, in provider
// creation order.
func (s *Server) groupMembers(teamID string) (map[string][]string, error) {
	ps, err := s.st.Providers(teamID)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, p := range ps {
		if p.GroupID != "" {
			out[p.GroupID] = append(out[p.GroupID], p.ID)
		}
	}
	return out, nil
}

func groupView(g *store.DeliveryGroup, members map[string][]string) groupItem {
	ids := members[g.ID]
	if ids == nil {
		ids = []string{}
	}
	return groupItem{
		ID: g.ID, Name: g.Name, Description: nullable(g.Description), ProviderIDs: ids,
		CreatedAt: rfc3339(g.CreatedAt), UpdatedAt: rfc3339(g.UpdatedAt),
	}
}

// groupInput is a decoded group body.
type groupInput struct{ name, description httpapi.Opt[string] }

func decodeGroup(o *httpapi.Object) (*groupInput, error) {
	if err := o.Allow("name", "description"); err != nil {
		return nil, err
	}
	in := &groupInput{}
	var err error
	if in.name, err = httpapi.Field[string](o, "name"); err != nil {
		return nil, err
	}
	if in.description, err = httpapi.Field[string](o, "description"); err != nil {
		return nil, err
	}
	return in, nil
}

// applyGroup validates in onto g. A PATCH leaves absent fields alone;
// description "" or null clears it. Deterministic: it may run in a store
// function more than once.
func applyGroup(in *groupInput, g *store.DeliveryGroup, v *httpapi.Validator, create bool) {
	switch {
	case in.name.Set && !in.name.Null:
		g.Name = httpapi.CheckName(v, "name", in.name.V, maxGroupName)
	case in.name.Set || create:
		v.Add("name", httpapi.FieldRequired, "name is required")
	}
	if in.description.Set {
		d := ""
		if !in.description.Null {
			d = in.description.V
		}
		g.Description = checkDescription(v, "description", d, maxGroupDescription)
	}
}

// checkDescription validates optional free text shown in UIs only (never
// in a header or an SMTP command): line breaks and tabs are fine there,
// other control characters are not.
func checkDescription(v *httpapi.Validator, field, s string, max int) string {
	s = strings.TrimSpace(s)
	switch {
	case utf8.RuneCountInString(s) > max:
		v.Add(field, httpapi.FieldTooLong, field+" must be at most "+strconv.Itoa(max)+" characters")
	case httpapi.HasControl(strings.NewReplacer("\r", "", "\n", "", "\t", "").Replace(s)):
		v.Add(field, httpapi.FieldInvalid, field+" must not contain control characters other than line breaks and tabs")
	}
	return s
}

func (s *Server) createGroup(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	in, err := decodeGroup(o)
	if err != nil {
		return err
	}
	now := s.now()
	g := &store.DeliveryGroup{ID: store.NewID(store.PrefixGroup), TeamID: c.team(), CreatedAt: now, UpdatedAt: now}
	v := &httpapi.Validator{}
	applyGroup(in, g, v, true)
	if err := v.Err(); err != nil {
		return err
	}
	if err := s.st.CreateGroup(g); err != nil {
		return err
	}
	s.log.Info("delivery group created", "request_id", c.reqID, "group", g.ID, "team", g.TeamID)
	// A new group has no members: no provider read (see groupView).
	c.w.Header().Set("Location", "/api/v1/delivery-groups/"+g.ID)
	c.w.Header().Set("ETag", etag(g.Version))
	c.ok(http.StatusCreated, groupView(g, nil))
	return nil
}

func (s *Server) listGroups(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Groups(c.team())
	if err != nil {
		return err
	}
	members, err := s.groupMembers(c.team())
	if err != nil {
		return err
	}
	items, pag := paginate(all, func(g *store.DeliveryGroup) string { return g.ID }, pg)
	out := make([]groupItem, 0, len(items))
	for _, g := range items {
		out = append(out, groupView(g, members))
	}
	c.list(out, pag)
	return nil
}

// patchGroup changes name and description (see patch).
func (s *Server) patchGroup(c *call) error {
	return patch(c, s.res.groups, decodeGroup, func(cur *store.DeliveryGroup, ver int64, in *groupInput) (*store.DeliveryGroup, error) {
		now := s.now()
		return s.st.UpdateGroup(c.team(), cur.ID, ver, func(g *store.DeliveryGroup) error {
			v := &httpapi.Validator{}
			applyGroup(in, g, v, false)
			if err := v.Err(); err != nil {
				return err
			}
			g.UpdatedAt = now
			return nil
		})
	})
}

// groupDeleted is the DELETE answer: what moved, and which credentials
// still name the group in their scope (and so may now reach no provider).
type groupDeleted struct {
	ID                string   `json:"id"`
	Deleted           bool     `json:"deleted"`
	MovedProviders    []string `json:"moved_providers"`
	AffectedAPIKeys   []string `json:"affected_api_keys"`
	AffectedMailboxes []string `json:"affected_mailboxes"`
}

func (s *Server) deleteGroup(c *call) error {
	cur, ver, err := s.res.groups.loadForWrite(c, "deleted")
	if err != nil {
		return err
	}
	// Exclusive: no provider or scope write may attach to the group
	// between its deletion and the report of what named it.
	s.refMu.Lock()
	defer s.refMu.Unlock()
	res, err := s.st.DeleteGroup(c.team(), cur.ID, ver, s.now())
	if err != nil {
		return storeErr(err, "delivery group")
	}
	s.log.Info("delivery group deleted", "request_id", c.reqID, "group", cur.ID,
		"moved_providers", len(res.MovedProviders), "affected_keys", len(res.AffectedKeys),
		"affected_mailboxes", len(res.AffectedMailboxes))
	c.ok(http.StatusOK, groupDeleted{
		ID: cur.ID, Deleted: true,
		MovedProviders:    nonNil(res.MovedProviders),
		AffectedAPIKeys:   nonNil(res.AffectedKeys),
		AffectedMailboxes: nonNil(res.AffectedMailboxes),
	})
	return nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}
