package store

import (
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bGroups holds DeliveryGroup records keyed by ID.
var bGroups = []byte("groups")

// DeliveryGroup is a named set of a team's providers. A provider belongs to
// at most one group (Provider.GroupID); a credential whose scope names the
// group may send through its members only.
type DeliveryGroup struct {
	ID          string    `json:"id"`
	TeamID      string    `json:"team_id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Version increases with every write; it is the ETag.
	Version int64 `json:"version"`
}

// GroupDeletion is what deleting a group changed or left pointing at it.
type GroupDeletion struct {
	// MovedProviders are the providers that were members and now belong
	// to no group.
	MovedProviders []string
	// AffectedKeys are the team's unrevoked API keys whose send scope
	// names the group. Their scopes are left as they are: a scope that
	// names only deleted groups reaches no provider, and silently widening
	// or narrowing it would be worse than telling the caller.
	AffectedKeys []string
	// AffectedMailboxes are the team's mailboxes whose scope names it,
	// left as they are for the same reason.
	AffectedMailboxes []string
}

// CreateGroup stores a new group with version 1.
func (s *Store) CreateGroup(g *DeliveryGroup) error {
	return s.updateRecord(func(tx *bolt.Tx) error { return createTeamRecord(tx, kindGroups, g) })
}

// Group returns a group of teamID; another team's group is ErrNotFound.
func (s *Store) Group(teamID, id string) (*DeliveryGroup, error) {
	var g *DeliveryGroup
	err := s.view(func(tx *bolt.Tx) (err error) {
		g, err = getTeamRecord[DeliveryGroup](tx, kindGroups, teamID, id)
		return err
	})
	return g, err
}

// Groups lists a team's groups in creation order.
func (s *Store) Groups(teamID string) ([]*DeliveryGroup, error) {
	var out []*DeliveryGroup
	err := s.view(func(tx *bolt.Tx) (err error) {
		out, err = listTeam[DeliveryGroup](tx, kindGroups, teamID)
		return err
	})
	return out, err
}

// UpdateGroup applies fn to the team's stored group and saves it with a new
// version. ifVersion > 0 makes the write conditional (If-Match). fn may run
// more than once and must be deterministic.
func (s *Store) UpdateGroup(teamID, id string, ifVersion int64, fn func(*DeliveryGroup) error) (*DeliveryGroup, error) {
	var out *DeliveryGroup
	err := s.updateRecord(func(tx *bolt.Tx) (err error) {
		out, err = updateTeamRecord(tx, kindGroups, teamID, id, ifVersion, fn)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteGroup removes a team's group and, in the same transaction, moves
// its member providers to no group (bumping their versions and UpdatedAt
// to now, so ETags and the scheduler's pool keys see the change). Doing
// both in one transaction means no reader ever sees a provider pointing at
// a group that no longer exists. The answer also lists the keys and
// mailboxes whose scope still names the group.
//
// In cluster mode one write is one etcd transaction, which takes a
// bounded number of keys (Replicator.MaxChanges); a group with more
// members than fit is emptied first by earlier writes that each move a
// share of its members out (see ungroupInSteps), and the last write
// deletes the group with the rest, as above.
func (s *Store) DeleteGroup(teamID, id string, ifVersion int64, now time.Time) (*GroupDeletion, error) {
	var res GroupDeletion
	moved, err := s.ungroupInSteps(teamID, id, ifVersion, now)
	if err != nil {
		return nil, err
	}
	if len(moved) > 0 {
		// The first step checked If-Match; the deletion is under way, and
		// the group's version did not change by it.
		ifVersion = 0
		s.providersChanged(nil, teamID)
	}
	err = s.updateRecord(func(tx *bolt.Tx) error {
		// The function may be re-run after a sibling in its batch failed:
		// start from a clean result each time.
		res = GroupDeletion{MovedProviders: slices.Clone(moved)}
		if _, err := deleteTeamRecord[DeliveryGroup](tx, kindGroups, teamID, id, ifVersion); err != nil {
			return err
		}
		if err := ungroupProviders(tx, teamID, id, now, 0, &res); err != nil {
			return err
		}
		if len(res.MovedProviders) > len(moved) {
			// A provider left the group: a scope naming it no longer
			// holds it, which may change what a waiting message can use.
			if err := bumpWakeGen(tx, teamID); err != nil {
				return err
			}
		}
		return scopesNaming(tx, teamID, id, &res)
	})
	if err != nil {
		return nil, err
	}
	if len(res.MovedProviders) > len(moved) {
		// After the commit, so a reader that sees the new generation
		// also sees the new provider records.
		s.providersChanged(nil, teamID)
	}
	return &res, nil
}

// groupDeleteRoom is how many keys the last write of a group deletion
// needs besides its members: the group and its team index entry, with
// room to spare.
const groupDeleteRoom = 8

// maxGroupSteps bounds the writes that empty one group (200 providers per
// team take two); members added meanwhile by other writes cannot keep a
// deletion going for ever.
const maxGroupSteps = 32

// ungroupInSteps, when the replicator bounds a write's keys and the group
// has more members than the deleting write can carry, moves members out
// of the group in writes of at most that many keys, until the rest fits,
// and returns the providers it moved. Each step is a whole write of its
// own that leaves a state the API could have made (a provider moved out
// of a group that still exists, as PATCH group_id=null does), so a step
// that commits and a deletion that stops after it (etcd unreachable)
// leave nothing half done: the group and its remaining members are
// there, and a retry of the DELETE finishes it. The first step checks
// If-Match; later steps only need the group to exist.
func (s *Store) ungroupInSteps(teamID, id string, ifVersion int64, now time.Time) ([]string, error) {
	limit := s.maxChanges() - groupDeleteRoom
	if s.repl == nil || limit <= 0 {
		return nil, nil
	}
	var n int
	if err := s.view(func(tx *bolt.Tx) (err error) { n, err = countGroupMembers(tx, teamID, id); return err }); err != nil || n <= limit {
		return nil, err // the usual case, without an etcd read; each step reads afresh
	}
	var moved []string
	for range maxGroupSteps {
		var step GroupDeletion
		err := s.updateRecord(func(tx *bolt.Tx) error {
			step = GroupDeletion{}
			g, err := getTeamRecord[DeliveryGroup](tx, kindGroups, teamID, id)
			if err != nil {
				return err
			}
			if ifVersion > 0 && g.Version != ifVersion {
				return ErrConflict
			}
			n, err := countGroupMembers(tx, teamID, id)
			if err != nil || n <= limit {
				return err // the last write carries them: nothing to do here
			}
			return ungroupProviders(tx, teamID, id, now, limit, &step)
		})
		if err != nil {
			return moved, err
		}
		if len(step.MovedProviders) == 0 {
			return moved, nil
		}
		moved = append(moved, step.MovedProviders...)
		ifVersion = 0
	}
	return moved, nil
}

// countGroupMembers counts teamID's providers in group id.
func countGroupMembers(tx *bolt.Tx, teamID, id string) (int, error) {
	providers, err := listTeam[Provider](tx, kindProviders, teamID)
	n := 0
	for _, p := range providers {
		if p.GroupID == id {
			n++
		}
	}
	return n, err
}

// ungroupProviders clears GroupID on every provider of the team that is in
// group id (at most limit of them when limit > 0). It reads only the
// team's providers.
func ungroupProviders(tx *bolt.Tx, teamID, id string, now time.Time, limit int, res *GroupDeletion) error {
	providers, err := listTeam[Provider](tx, kindProviders, teamID)
	if err != nil {
		return err
	}
	n := 0
	for _, p := range providers {
		if p.GroupID != id {
			continue
		}
		if limit > 0 && n == limit {
			break
		}
		n++
		p.GroupID = ""
		p.Version++
		p.UpdatedAt = now
		if err := putTeamRecord(tx, kindProviders, p); err != nil {
			return err
		}
		res.MovedProviders = append(res.MovedProviders, p.ID)
	}
	return nil
}

// scopesNaming lists the team's unrevoked keys and its mailboxes whose
// group scope names id. Revoked keys can never send again, so reporting
// them would only be noise. It reads only the team's keys and mailboxes.
func scopesNaming(tx *bolt.Tx, teamID, id string, res *GroupDeletion) error {
	names := func(sc Scope) bool { return sc.Type == "group" && slices.Contains(sc.GroupPublicIDs, id) }
	keys, err := listTeam[APIKey](tx, kindKeys, teamID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Active() && names(k.SendScope) {
			res.AffectedKeys = append(res.AffectedKeys, k.ID)
		}
	}
	mailboxes, err := listTeam[Mailbox](tx, kindMailboxes, teamID)
	if err != nil {
		return err
	}
	for _, m := range mailboxes {
		if names(m.SendScope) {
			res.AffectedMailboxes = append(res.AffectedMailboxes, m.ID)
		}
	}
	return nil
}
