package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// ManagedProviderName is the display name of each team's managed account.
const ManagedProviderName = "Managed Amazon SES"

// teamItem is the operator's view of a team.
type teamItem struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	ProviderLimit *int   `json:"provider_limit"`
	CreatedAt     string `json:"created_at"`
}

func teamView(t *store.Team) teamItem {
	return teamItem{ID: t.ID, Name: t.Name, ProviderLimit: t.ProviderLimit, CreatedAt: rfc3339(t.CreatedAt)}
}

// ManagedProvider is a new team's managed amazon_ses account: shared,
// active from the start (SPEC §2).
func ManagedProvider(teamID string, now time.Time) *store.Provider {
	return &store.Provider{
		ID: store.NewID(store.PrefixProvider), TeamID: teamID, Name: ManagedProviderName,
		Type: store.TypeManagedSES, Status: state.ProviderActive, Managed: true,
		CreatedAt: now, UpdatedAt: now, ActivatedAt: now,
	}
}

// ProvisionTeam creates a team the way SPEC §1/§2 wants every team to
// start: the team, its managed amazon_ses account (active by default) and
// a first root key with "*" holding rootSecret (which the caller
// generated with store.NewSecret, or took from bootstrap configuration).
//
// The three are one transaction (store.CreateTeam): a team is created whole
// or not at all, a name already taken is store.ErrConflict, and concurrent
// creates share commits.
func ProvisionTeam(st *store.Store, name, rootSecret string, providerLimit *int, now time.Time) (*store.Team, *store.APIKey, error) {
	now = now.UTC()
	t := &store.Team{ID: store.NewID(store.PrefixTeam), Name: name, CreatedAt: now, ProviderLimit: providerLimit}
	k := &store.APIKey{
		ID: store.NewID(store.PrefixKey), TeamID: t.ID, Name: "root", Type: store.KeyRoot,
		Prefix: rootSecret[:min(keyPrefixLen, len(rootSecret))], Hash: store.HashSecret(rootSecret),
		Permissions: []string{"*"}, CreatedAt: now,
	}
	if err := st.CreateTeam(t, ManagedProvider(t.ID, now), k); err != nil {
		return nil, nil, err
	}
	return t, k, nil
}

func (s *Server) listTeams(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Teams()
	if err != nil {
		return err
	}
	items, pag := paginate(all, func(t *store.Team) string { return t.ID }, pg)
	out := make([]teamItem, 0, len(items))
	for _, t := range items {
		out = append(out, teamView(t))
	}
	c.list(out, pag)
	return nil
}

// createTeam is POST /operator/teams {"name","provider_limit"?}: the team
// with its managed account and first root key, whose secret is in the
// answer once.
func (s *Server) createTeam(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	if err := o.Allow("name", "provider_limit"); err != nil {
		return err
	}
	name, err := httpapi.Field[string](o, "name")
	if err != nil {
		return err
	}
	limit, err := httpapi.Field[int](o, "provider_limit")
	if err != nil {
		return err
	}
	v := &httpapi.Validator{}
	n := ""
	if !name.Set || name.Null {
		v.Add("name", httpapi.FieldRequired, "name is required")
	} else {
		n = httpapi.CheckName(v, "name", name.V, 100)
	}
	var plimit *int
	if limit.Set && !limit.Null {
		if limit.V < 0 || limit.V > 100_000 {
			v.Add("provider_limit", httpapi.FieldOutOfRange, "provider_limit must be between 0 and 100000")
		}
		plimit = &limit.V
	}
	if err := v.Err(); err != nil {
		return err
	}
	// Names are unique (the bootstrap finds "default" by name): the
	// store checks it in the creating transaction.
	secret := store.NewSecret(store.SecretPrefixRoot)
	t, k, err := ProvisionTeam(s.st, n, secret, plimit, s.now())
	if errors.Is(err, store.ErrConflict) {
		return httpapi.ErrConflict("a team named " + n + " already exists")
	}
	if err != nil {
		return err
	}
	s.log.Info("team created", "request_id", c.reqID, "team", t.ID)
	c.ok(http.StatusCreated, map[string]any{
		"team":     teamView(t),
		"root_key": createdKey{keyItem: keyView(k, s.now()), Key: secret},
	})
	return nil
}
