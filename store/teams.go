package store

import (
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

// PutTeam creates or replaces a team.
func (s *Store) PutTeam(t *Team) error {
	return s.updateRecord(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bTeams), t.ID, t) })
}

// CreateTeam stores a new team whose name no team has (else
// ErrConflict). The check is inside the write, so it holds across
// concurrent creates and, in cluster mode, across nodes. It reads every
// team's record, as TeamByName does; teams are few.
func (s *Store) CreateTeam(t *Team) error {
	return s.updateRecord(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTeams)
		if b.Get([]byte(t.ID)) != nil {
			return ErrConflict
		}
		taken := false
		if err := forEachJSON(b, func(o *Team) { taken = taken || o.Name == t.Name }); err != nil {
			return err
		}
		if taken {
			return ErrConflict
		}
		return putJSON(b, t.ID, t)
	})
}

// Team returns one team.
func (s *Store) Team(id string) (*Team, error) {
	var t Team
	err := s.view(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bTeams), id, &t) })
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// TeamByName returns the team with that name (names are unique).
func (s *Store) TeamByName(name string) (*Team, error) {
	teams, err := s.Teams()
	if err != nil {
		return nil, err
	}
	for _, t := range teams {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, ErrNotFound
}

// Teams lists all teams in creation order.
func (s *Store) Teams() ([]*Team, error) {
	var out []*Team
	err := s.view(func(tx *bolt.Tx) error {
		return forEachJSON(tx.Bucket(bTeams), func(t *Team) { out = append(out, t) })
	})
	return out, err
}
