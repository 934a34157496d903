package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// Team-owned records (providers, keys, groups, mailboxes, webhooks,
// domains) share one shape: a JSON record keyed by its ID, owned by one
// team, and — for all but keys — a Version that is the ETag. The helpers
// below hold the rules every kind used to repeat: another team's record
// is ErrNotFound, an If-Match version that does not match is ErrConflict,
// an update cannot change who the record is, and every write bumps the
// version.

// teamKind says where one kind of team-owned record lives.
//
// Layout: records stay keyed by their bare ID, and a second bucket, the
// team index, holds team ID ‖ 0x00 ‖ record ID → nil for each of them. A
// team's list is a cursor Seek to its prefix in the index and one Get per
// record it names: it reads that team's keys only, however many teams
// share the file. Keying the records themselves by team ‖ ID would save
// those Gets but would make every lookup by ID alone (the scheduler's
// provider, a credential reference "key:<id>", the webhook dispatcher, a
// mailbox password's mailbox) need an ID → team index first, and every
// such read outside these helpers change with it; with the index, records
// and their readers stay as they were and the migration only adds keys.
// Team IDs never contain 0x00, so one team's prefix never matches another
// team's keys. An etcd backend would keep the same shape: a team prefix
// is a key range there too.
type teamKind struct {
	// bucket holds the records keyed by ID.
	bucket []byte
	// byTeam is the team index: team ID ‖ 0x00 ‖ ID → nil.
	byTeam []byte
}

var (
	bProvidersByTeam = []byte("providers_by_team")
	bKeysByTeam      = []byte("keys_by_team")
	bGroupsByTeam    = []byte("groups_by_team")
	bMailboxesByTeam = []byte("mailboxes_by_team")
	bWebhooksByTeam  = []byte("webhooks_by_team")
	bDomainsByTeam   = []byte("domains_by_team")
	// bMailboxPwByMailbox indexes mailbox passwords:
	// team ID ‖ 0x00 ‖ mailbox ID ‖ 0x00 ‖ password ID → nil.
	bMailboxPwByMailbox = []byte("mailbox_passwords_by_mailbox")
)

var (
	kindProviders = teamKind{bucket: bProviders, byTeam: bProvidersByTeam}
	kindKeys      = teamKind{bucket: bKeys, byTeam: bKeysByTeam}
	kindGroups    = teamKind{bucket: bGroups, byTeam: bGroupsByTeam}
	kindMailboxes = teamKind{bucket: bMailboxes, byTeam: bMailboxesByTeam}
	kindWebhooks  = teamKind{bucket: bWebhooks, byTeam: bWebhooksByTeam}
	kindDomains   = teamKind{bucket: bDomains, byTeam: bDomainsByTeam}
	// teamKinds are all of them, for the migration that builds the indexes.
	teamKinds = []teamKind{kindProviders, kindKeys, kindGroups, kindMailboxes, kindWebhooks, kindDomains}
)

// teamPrefix is the start of every team index key of teamID.
func teamPrefix(teamID string) []byte { return []byte(teamID + "\x00") }

// teamIndexKey is a record's key in its team index.
func teamIndexKey(teamID, id string) []byte { return []byte(teamID + "\x00" + id) }

// forTeamKeys calls fn with the record ID of each index entry under
// prefix, in key (creation) order. fn must not write to idx.
func forTeamKeys(idx *bolt.Bucket, prefix []byte, fn func(id []byte) error) error {
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if err := fn(k[len(prefix):]); err != nil {
			return err
		}
	}
	return nil
}

// anyTeam, passed as the team of a lookup, accepts a record of any team
// (the relay's own writes, which know a record only by ID). No team ID
// can be "*": IDs are prefix + base32.
const anyTeam = "*"

// teamRecord is what the helpers need of a record type T, implemented on
// *T: its identity and its version.
type teamRecord[T any] interface {
	*T
	owner() (id, teamID string)
	setOwner(id, teamID string)
	version() int64
	setVersion(v int64)
}

func (p *Provider) owner() (string, string)    { return p.ID, p.TeamID }
func (p *Provider) setOwner(id, teamID string) { p.ID, p.TeamID = id, teamID }
func (p *Provider) version() int64             { return p.Version }
func (p *Provider) setVersion(v int64)         { p.Version = v }

func (g *DeliveryGroup) owner() (string, string)    { return g.ID, g.TeamID }
func (g *DeliveryGroup) setOwner(id, teamID string) { g.ID, g.TeamID = id, teamID }
func (g *DeliveryGroup) version() int64             { return g.Version }
func (g *DeliveryGroup) setVersion(v int64)         { g.Version = v }

func (m *Mailbox) owner() (string, string)    { return m.ID, m.TeamID }
func (m *Mailbox) setOwner(id, teamID string) { m.ID, m.TeamID = id, teamID }
func (m *Mailbox) version() int64             { return m.Version }
func (m *Mailbox) setVersion(v int64)         { m.Version = v }

func (w *Webhook) owner() (string, string)    { return w.ID, w.TeamID }
func (w *Webhook) setOwner(id, teamID string) { w.ID, w.TeamID = id, teamID }
func (w *Webhook) version() int64             { return w.Version }
func (w *Webhook) setVersion(v int64)         { w.Version = v }

func (d *Domain) owner() (string, string)    { return d.ID, d.TeamID }
func (d *Domain) setOwner(id, teamID string) { d.ID, d.TeamID = id, teamID }
func (d *Domain) version() int64             { return d.Version }
func (d *Domain) setVersion(v int64)         { d.Version = v }

func (k *APIKey) owner() (string, string)    { return k.ID, k.TeamID }
func (k *APIKey) setOwner(id, teamID string) { k.ID, k.TeamID = id, teamID }

// Keys have no version: they are never edited, only revoked and touched,
// and the API gives them no ETag. The helpers' version step is a no-op.
func (k *APIKey) version() int64   { return 0 }
func (k *APIKey) setVersion(int64) {}

// getTeamRecord reads record id of kind k; a record of another team than
// teamID (unless anyTeam) is ErrNotFound, as is a missing one.
func getTeamRecord[T any, P teamRecord[T]](tx *bolt.Tx, k teamKind, teamID, id string) (P, error) {
	var v T
	if err := getJSON(tx.Bucket(k.bucket), id, &v); err != nil {
		return nil, err
	}
	p := P(&v)
	if _, team := p.owner(); teamID != anyTeam && team != teamID {
		return nil, ErrNotFound
	}
	return p, nil
}

// createTeamRecord stores a new record with version 1; an existing ID is
// ErrConflict.
func createTeamRecord[T any, P teamRecord[T]](tx *bolt.Tx, k teamKind, rec P) error {
	id, _ := rec.owner()
	if tx.Bucket(k.bucket).Get([]byte(id)) != nil {
		return ErrConflict
	}
	rec.setVersion(1)
	return putTeamRecord(tx, k, rec)
}

// putTeamRecord writes rec as it is and enters it in its team index.
func putTeamRecord[T any, P teamRecord[T]](tx *bolt.Tx, k teamKind, rec P) error {
	id, team := rec.owner()
	if err := tx.Bucket(k.byTeam).Put(teamIndexKey(team, id), nil); err != nil {
		return err
	}
	return putJSON(tx.Bucket(k.bucket), id, rec)
}

// updateTeamRecord applies fn to the stored record id of teamID and saves
// it with the next version. ifVersion > 0 makes the write conditional
// (If-Match). fn cannot change the record's ID or team (indexes depend on
// them). It returns the record as saved.
func updateTeamRecord[T any, P teamRecord[T]](tx *bolt.Tx, k teamKind, teamID, id string, ifVersion int64, fn func(P) error) (P, error) {
	rec, err := getTeamRecord[T, P](tx, k, teamID, id)
	if err != nil {
		return nil, err
	}
	if ifVersion > 0 && rec.version() != ifVersion {
		return nil, ErrConflict
	}
	_, team := rec.owner()
	if err := fn(rec); err != nil {
		return nil, err
	}
	rec.setOwner(id, team)
	rec.setVersion(rec.version() + 1)
	return rec, putJSON(tx.Bucket(k.bucket), id, rec)
}

// deleteTeamRecord removes record id of teamID (If-Match as in update) and
// returns it, for the caller to clean up what points at it.
func deleteTeamRecord[T any, P teamRecord[T]](tx *bolt.Tx, k teamKind, teamID, id string, ifVersion int64) (P, error) {
	rec, err := getTeamRecord[T, P](tx, k, teamID, id)
	if err != nil {
		return nil, err
	}
	if ifVersion > 0 && rec.version() != ifVersion {
		return nil, ErrConflict
	}
	_, team := rec.owner()
	if err := tx.Bucket(k.byTeam).Delete(teamIndexKey(team, id)); err != nil {
		return nil, err
	}
	return rec, tx.Bucket(k.bucket).Delete([]byte(id))
}

// listTeam returns teamID's records of kind k in creation (ID) order. It
// reads the team's index entries and their records, nothing of other
// teams. An index entry whose record is gone is skipped.
func listTeam[T any, P teamRecord[T]](tx *bolt.Tx, k teamKind, teamID string) ([]P, error) {
	var out []P
	b := tx.Bucket(k.bucket)
	err := forTeamKeys(tx.Bucket(k.byTeam), teamPrefix(teamID), func(id []byte) error {
		data := b.Get(id)
		if data == nil {
			return nil
		}
		var v T
		if err := jsonUnmarshal(data, &v); err != nil {
			return err
		}
		if _, team := P(&v).owner(); team == teamID {
			out = append(out, P(&v))
		}
		return nil
	})
	return out, err
}

// countTeam counts teamID's records of kind k without decoding them.
func countTeam(tx *bolt.Tx, k teamKind, teamID string) (int, error) {
	n := 0
	err := forTeamKeys(tx.Bucket(k.byTeam), teamPrefix(teamID), func([]byte) error { n++; return nil })
	return n, err
}

// listAll returns every team's records of kind k in ID order.
func listAll[T any](tx *bolt.Tx, k teamKind) ([]*T, error) {
	var out []*T
	err := forEachJSON(tx.Bucket(k.bucket), func(rec *T) { out = append(out, rec) })
	return out, err
}

// forEachJSON decodes every value of b in key order.
func forEachJSON[T any](b *bolt.Bucket, add func(*T)) error {
	return b.ForEach(func(_, v []byte) error {
		x := new(T)
		if err := jsonUnmarshal(v, x); err != nil {
			return err
		}
		add(x)
		return nil
	})
}
