package admin

import (
	"errors"
	"net/http"
	"time"

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
// The three writes are separate transactions; a failure part-way leaves a
// team without a managed account or key, which the operator can see and
// retry, rather than a half-written record.
func ProvisionTeam(st *store.Store, name, rootSecret string, providerLimit *int, now time.Time) (*store.Team, *store.APIKey, error) {
	now = now.UTC()
	t := &store.Team{ID: store.NewID(store.PrefixTeam), Name: name, CreatedAt: now, ProviderLimit: providerLimit}
	if err := st.CreateTeam(t); err != nil {
		return nil, nil, err
	}
	if err := st.CreateProvider(ManagedProvider(t.ID, now)); err != nil {
		return nil, nil, err
	}
	k := &store.APIKey{
		ID: store.NewID(store.PrefixKey), TeamID: t.ID, Name: "root", Type: store.KeyRoot,
		Prefix: rootSecret[:min(keyPrefixLen, len(rootSecret))], Hash: store.HashSecret(rootSecret),
		Permissions: []string{"*"}, CreatedAt: now,
	}
	if err := st.CreateKey(k); err != nil {
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
	o, err := readBody(c.r)
	if err != nil {
		return err
	}
	if err := o.allow("name", "provider_limit"); err != nil {
		return err
	}
	name, err := field[string](o, "name")
	if err != nil {
		return err
	}
	limit, err := field[int](o, "provider_limit")
	if err != nil {
		return err
	}
	v := &validator{}
	n := ""
	if !name.Set || name.Null {
		v.add("name", fcRequired, "name is required")
	} else {
		n = checkName(v, "name", name.V, 100)
	}
	var plimit *int
	if limit.Set && !limit.Null {
		if limit.V < 0 || limit.V > 100_000 {
			v.add("provider_limit", fcOutOfRange, "provider_limit must be between 0 and 100000")
		}
		plimit = &limit.V
	}
	if err := v.err(); err != nil {
		return err
	}
	// Names are unique (the bootstrap finds "default" by name). The
	// check-then-create race is closed by createMu.
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if _, err := s.st.TeamByName(n); err == nil {
		return errConflict("a team named " + n + " already exists")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	secret := store.NewSecret(store.SecretPrefixRoot)
	t, k, err := ProvisionTeam(s.st, n, secret, plimit, s.now())
	if errors.Is(err, store.ErrConflict) {
		// Another node created the name since the check above.
		return errConflict("a team named " + n + " already exists")
	} else if err != nil {
		return err
	}
	s.log.Info("team created", "request_id", c.reqID, "team", t.ID)
	c.ok(http.StatusCreated, map[string]any{
		"team":     teamView(t),
		"root_key": createdKey{keyItem: keyView(k, s.now()), Key: secret},
	})
	return nil
}
