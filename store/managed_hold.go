package store

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smtpmux/smtpmux/internal/state"
)

// The managed account's safety hold (SPEC §13): a team whose mail through
// the managed account reaches "at risk" has that account taken out of
// rotation until the operator releases it. The hold lives on the managed
// provider record (status inactive, a reason, Held), so routing and
// acceptance need nothing new; an index of held teams lets the operator
// list them without reading every team's providers.
var bManagedHeld = []byte("managed_held") // team id → managed provider id

// ManagedHold says why and since when a managed account is held.
type ManagedHold struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// ErrHeld is a write a hold forbids (the team activating its held
// managed account).
var ErrHeld = errors.New("managed account held")

// HoldManaged holds teamID's managed provider providerID with reason. It
// reports false (and writes nothing) when it is held already.
func (s *Store) HoldManaged(teamID, providerID, reason string, at time.Time) (held bool, p *Provider, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		held, p = false, nil
		cur, err := getTeamRecord[Provider](tx, kindProviders, teamID, providerID)
		if err != nil {
			return err
		}
		if !cur.Managed || cur.Held != nil {
			return nil
		}
		p, err = updateTeamRecord(tx, kindProviders, teamID, providerID, 0, func(p *Provider) error {
			p.Held = &ManagedHold{Reason: reason, At: at}
			p.Status, p.StatusReason, p.UpdatedAt = state.ProviderInactive, "held: "+reason, at
			return nil
		})
		if err != nil {
			return err
		}
		held = true
		if err := tx.Bucket(bManagedHeld).Put([]byte(teamID), []byte(providerID)); err != nil {
			return err
		}
		return bumpWakeGen(tx, teamID)
	})
	s.providersChanged(err, teamID)
	return held, p, err
}

// ReleaseManaged ends teamID's hold: the managed account is active again.
// ErrNotFound when the team has no held account.
func (s *Store) ReleaseManaged(teamID string, at time.Time) (*Provider, error) {
	var p *Provider
	err := s.update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bManagedHeld)
		id := idx.Get([]byte(teamID))
		if id == nil {
			return ErrNotFound
		}
		var err error
		p, err = updateTeamRecord(tx, kindProviders, teamID, string(id), 0, func(p *Provider) error {
			p.Held = nil
			p.Status, p.StatusReason, p.UpdatedAt, p.ActivatedAt = state.ProviderActive, "", at, at
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := idx.Delete([]byte(teamID)); err != nil {
			return err
		}
		return bumpWakeGen(tx, teamID)
	})
	s.providersChanged(err, teamID)
	return p, err
}

// HeldManaged returns the held managed providers, by team.
func (s *Store) HeldManaged() ([]*Provider, error) {
	var out []*Provider
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bManagedHeld).ForEach(func(team, id []byte) error {
			p, err := getTeamRecord[Provider](tx, kindProviders, string(team), string(id))
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// FeedbackWindow sums teamID's counters for mail created since from
// (through providerID only, unless ""): recipients with a final outcome
// (delivered), hard and soft bounces, complaints.
func (s *Store) FeedbackWindow(teamID, providerID string, from time.Time) (delivered, hard, soft, complaints int64, err error) {
	err = s.RecipientCountsBetween(teamID, from, time.Time{}, func(_ time.Time, prov, status string, n int64) {
		if (providerID == "" || prov == providerID) && status != string(state.MessagePending) {
			delivered += n
		}
	})
	if err != nil {
		return
	}
	err = s.FeedbackCounts(teamID, from, time.Time{}, func(_ time.Time, prov, typ string, n int64) {
		if providerID != "" && prov != providerID {
			return
		}
		switch typ {
		case BounceHard:
			hard += n
		case BounceSoft:
			soft += n
		case "complaint":
			complaints += n
		}
	})
	return
}
