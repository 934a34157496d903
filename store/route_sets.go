package store

// Routing sets: the in-scope providers and their weights that an attempt's
// routing explanation refers to instead of listing them (routing.Stored).
// One team's set is the same for every message of a scope until its
// providers change, so with 200 providers in scope a record of 16 KB per
// attempt — encoded, written and decoded at every update of the message —
// becomes one reference and one record per set and UTC day.
//
// Keys are day ‖ 0x00 ‖ team ‖ 0x00 ‖ hash, day as YYYYMMDD: the set is
// written again (by reference from that day's attempts) each day it is
// used, so retention drops whole days from the front of the bucket
// without knowing which messages refer to which set. Like the messages,
// the sets are local to the node.

import (
	"bytes"
	"strings"

	bolt "go.etcd.io/bbolt"
)

var bRouteSets = []byte("route_sets")

// RouteSetDayLayout is the time layout of a set reference's day.
const RouteSetDayLayout = "20060102"

func routeSetKey(day, teamID, hash string) []byte {
	return []byte(day + "\x00" + teamID + "\x00" + hash)
}

// PutRouteSet stores the routing set body of team under day and hash
// (a reference "day/hash"), durably. Writing the same set again is
// harmless: the reference names its content.
func (s *Store) PutRouteSet(teamID, day, hash string, body []byte) error {
	key := routeSetKey(day, teamID, hash)
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bRouteSets).Put(key, body)
	})
}

// RouteSet returns the set of team that reference ref ("day/hash")
// names, or ErrNotFound (a malformed reference, or a day retention has
// dropped).
func (s *Store) RouteSet(teamID, ref string) ([]byte, error) {
	day, hash, ok := strings.Cut(ref, "/")
	if !ok || len(day) != len(RouteSetDayLayout) {
		return nil, ErrNotFound
	}
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bRouteSets).Get(routeSetKey(day, teamID, hash))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// SweepRouteSets deletes up to limit sets of days before day (YYYYMMDD);
// more reports whether some may remain.
func (s *Store) SweepRouteSets(day string, limit int) (n int, more bool, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		n, more = 0, false
		c := tx.Bucket(bRouteSets).Cursor()
		for k, _ := c.First(); k != nil && string(k[:min(len(k), len(day))]) < day; k, _ = c.First() {
			if n == limit {
				more = true
				return nil
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, more, err
}
