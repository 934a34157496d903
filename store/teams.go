package store

import (
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Team is a tenant; every other record belongs to exactly one team.
type Team struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Managed account limits for this team; nil means the operator default.
	ManagedHourlyLimit *int `json:"managed_hourly_limit,omitempty"`
	ManagedDailyLimit  *int `json:"managed_daily_limit,omitempty"`
	// ProviderLimit overrides the default number of own providers.
	ProviderLimit *int `json:"provider_limit,omitempty"`
}

// bTeamNames is team name → team ID: names are unique, and checking it
// must not decode every team (creating 1,000 teams was quadratic) nor
// hold a process-wide lock across a commit (creates could not share one).
var bTeamNames = []byte("team_names")

// PutTeam creates or replaces a team. A team's name does not change; a
// name another team holds is refused with ErrConflict.
func (s *Store) PutTeam(t *Team) error {
	return s.updateRecord(func(tx *bolt.Tx) error { return putTeam(tx, t) })
}

func putTeam(tx *bolt.Tx, t *Team) error {
	names := tx.Bucket(bTeamNames)
	if id := names.Get([]byte(t.Name)); id != nil && string(id) != t.ID {
		return ErrConflict
	}
	if err := names.Put([]byte(t.Name), []byte(t.ID)); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bTeams), t.ID, t)
}

// CreateTeam creates team t with its managed account and first root key
// in one transaction, so that concurrent creates share commits (one fsync
// for many teams) and a crash leaves a team whole or absent. A name
// another team holds is refused with ErrConflict, as is a key hash in use.
func (s *Store) CreateTeam(t *Team, managed *Provider, root *APIKey) error {
	err := s.updateRecord(func(tx *bolt.Tx) error {
		if tx.Bucket(bTeamNames).Get([]byte(t.Name)) != nil {
			return ErrConflict
		}
		if err := putTeam(tx, t); err != nil {
			return err
		}
		if err := createTeamRecord(tx, kindProviders, managed); err != nil {
			return err
		}
		if err := bumpWakeGen(tx, managed.TeamID); err != nil {
			return err
		}
		return putKey(tx, root)
	})
	s.providersChanged(err, managed.TeamID)
	return err
}

// Team returns one team.
func (s *Store) Team(id string) (*Team, error) {
	var t Team
	// Read for every attempt (its managed-account limits): decoded
	// through the cache (rawCache), and the copy handed out shares no
	// pointer with it, since callers may edit and put it.
	err := s.view(func(tx *bolt.Tx) error { return decodeCached(tx.Bucket(bTeams), id, &s.teamRecs, &t) })
	if err != nil {
		return nil, err
	}
	t.ManagedHourlyLimit = cloneInt(t.ManagedHourlyLimit)
	t.ManagedDailyLimit = cloneInt(t.ManagedDailyLimit)
	t.ProviderLimit = cloneInt(t.ProviderLimit)
	return &t, nil
}

func cloneInt(p *int) *int {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// TeamByName returns the team with that name (names are unique).
func (s *Store) TeamByName(name string) (*Team, error) {
	var t Team
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bTeamNames).Get([]byte(name))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bTeams), string(id), &t)
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// migrateTeamNames is step 6 → 7: the name index of the teams. Names
// were unique before (a lock around check and create); should two teams
// share one anyway, the first created keeps it in the index.
func migrateTeamNames(tx *bolt.Tx) error {
	names := tx.Bucket(bTeamNames)
	var teams []*Team
	if err := forEachJSON(tx.Bucket(bTeams), func(t *Team) { teams = append(teams, t) }); err != nil {
		return err
	}
	slices.SortStableFunc(teams, func(a, b *Team) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, t := range teams {
		if names.Get([]byte(t.Name)) == nil {
			if err := names.Put([]byte(t.Name), []byte(t.ID)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Teams lists all teams in creation order.
func (s *Store) Teams() ([]*Team, error) {
	var out []*Team
	err := s.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx.Bucket(bTeams), func(t *Team) { out = append(out, t) })
	})
	return out, err
}
