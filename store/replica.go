package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Cluster mode keeps the state of record in a shared log (etcd) and this
// file as each node's read view of it. The store knows nothing of etcd:
// it hands its state-of-record writes to a Replicator and takes the
// log's changes back through ApplyChanges and ReplaceRecords.
//
// The unit that travels is a bucket key, not a record: a write's changes
// are the keys it changed in the state-of-record buckets, indexes
// included (team index, credential hashes, mailbox addresses, domain
// names, limit-request indexes). A node applying them therefore writes
// exactly what the writing node's transaction wrote, and every rule the
// store keeps (If-Match versions, uniqueness, per-team limits, a group
// deletion ungrouping its providers) stays in the one place it is written
// today, for both backends.

// recordBuckets are the state-of-record buckets, in a fixed order. The
// rest of the file (messages, bodies, queue indexes, counters, history,
// idempotency records, tracking links, wake generations) is the node's
// own.
var recordBuckets = [][]byte{
	bTeams, bKeys, bCredHash, bProviders, bGroups, bMailboxes, bMailboxAddr, bMailboxPasswords,
	bWebhooks, bLimitRequests, bLimitReqByTeam, bLimitReqPending, bDomains, bDomainNames,
	bProvidersByTeam, bKeysByTeam, bGroupsByTeam, bMailboxesByTeam, bWebhooksByTeam, bDomainsByTeam,
	bMailboxPwByMailbox, bTeamNames,
}

// IsRecordBucket reports whether name is a state-of-record bucket. A
// change naming any other bucket is refused: the shared log must not be
// able to write a node's spool.
func IsRecordBucket(name string) bool {
	for _, b := range recordBuckets {
		if string(b) == name {
			return true
		}
	}
	return false
}

// Change is one key of a state-of-record bucket as a write left it:
// Value nil means deleted.
type Change struct {
	Bucket string
	Key    []byte
	Value  []byte
}

// ErrUnavailable is the answer to a state-of-record write while the
// cluster's log cannot be reached: nothing was written, retry later.
var ErrUnavailable = errors.New("cluster state of record unavailable")

// ErrStale is a Replicator's answer when another write was committed
// since Begin: the store re-runs the write on the newer view.
var ErrStale = errors.New("state of record moved since the write was prepared")

// Replicator is where a cluster-mode store sends its state-of-record
// writes (store/... never imports etcd; cmd wires the backend in).
type Replicator interface {
	// Begin returns once this node's view holds every state-of-record
	// write committed anywhere before the call, and a token naming that
	// state. It fails with ErrUnavailable when the log cannot be reached.
	Begin() (token int64, err error)
	// Commit writes changes as one atomic unit, only if no other write
	// was committed since token (else ErrStale), and returns once this
	// node's view has applied them (read-your-writes).
	Commit(token int64, changes []Change) error
}

// ChangeLimiter is a Replicator that takes at most MaxChanges keys in one
// Commit (etcd's --max-txn-ops). The one write that can grow past it, a
// group deletion that moves its members out of the group, splits itself
// into steps that fit (DeleteGroup).
type ChangeLimiter interface {
	MaxChanges() int
}

// maxChanges is the replicator's bound on one write's keys; 0: none.
func (s *Store) maxChanges() int {
	if l, ok := s.repl.(ChangeLimiter); ok {
		return l.MaxChanges()
	}
	return 0
}

// maxWriteRetries bounds how often a write is re-run because another
// node's write landed between its Begin and Commit.
const maxWriteRetries = 16

// SetReplicator turns cluster mode on for this store: from then on every
// state-of-record write goes through r. Call it before the store serves.
func (s *Store) SetReplicator(r Replicator) { s.repl = r }

// Clustered reports whether a Replicator is set.
func (s *Store) Clustered() bool { return s.repl != nil }

// updateRecord is update for writes of the state of record. Single node,
// it is update. In cluster mode it runs fn on the current view in a
// transaction that is rolled back, sends the keys fn changed to the
// replicator, and returns once they are committed cluster-wide and
// applied here; the local write happens only through the apply, so a
// write the log refused leaves nothing behind. Writes fn makes outside
// the state-of-record buckets are dropped: the apply redoes the one kind
// there is (the team's wake generation when its providers change).
func (s *Store) updateRecord(fn func(*bolt.Tx) error) error {
	r := s.repl
	if r == nil {
		return s.update(fn)
	}
	for range maxWriteRetries {
		token, err := r.Begin()
		if err != nil {
			return err
		}
		changes, err := s.dryRun(fn)
		if err != nil || len(changes) == 0 {
			return err
		}
		err = r.Commit(token, changes)
		if !errors.Is(err, ErrStale) {
			return err
		}
	}
	return fmt.Errorf("%w: too many concurrent writes", ErrUnavailable)
}

// dryRun runs fn in a write transaction it rolls back and returns the
// state-of-record keys fn changed. The read transaction opened after the
// write one sees the same committed state fn started from (bbolt has one
// writer), so the difference is fn's own.
func (s *Store) dryRun(fn func(*bolt.Tx) error) ([]Change, error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	before, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	defer before.Rollback()
	if err := fn(tx); err != nil {
		return nil, err
	}
	var out []Change
	for _, name := range recordBuckets {
		out = diffBucket(out, string(name), before.Bucket(name), tx.Bucket(name))
	}
	return out, nil
}

// diffBucket appends to out the keys whose value differs between a and
// b (either may be nil), walking both in key order.
func diffBucket(out []Change, name string, a, b *bolt.Bucket) []Change {
	var ca, cb *bolt.Cursor
	var ka, va, kb, vb []byte
	if a != nil {
		ca = a.Cursor()
		ka, va = ca.First()
	}
	if b != nil {
		cb = b.Cursor()
		kb, vb = cb.First()
	}
	for ka != nil || kb != nil {
		switch c := compareKeys(ka, kb); {
		case c < 0: // only before: deleted
			out = append(out, Change{Bucket: name, Key: bytes.Clone(ka)})
			ka, va = ca.Next()
		case c > 0: // only after: added
			out = append(out, Change{Bucket: name, Key: bytes.Clone(kb), Value: nonNil(vb)})
			kb, vb = cb.Next()
		default:
			if !bytes.Equal(va, vb) {
				out = append(out, Change{Bucket: name, Key: bytes.Clone(kb), Value: nonNil(vb)})
			}
			ka, va = ca.Next()
			kb, vb = cb.Next()
		}
	}
	return out
}

// compareKeys orders keys with nil (the end of a cursor) last.
func compareKeys(a, b []byte) int {
	switch {
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

// nonNil copies v, keeping an empty value distinct from a deletion.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return bytes.Clone(v)
}

// ApplyChanges writes changes from the shared log into this node's view
// in one transaction, and redoes the local effects of provider writes
// (wake generation, provider caches).
func (s *Store) ApplyChanges(changes []Change) error {
	var teams map[string]struct{}
	err := s.update(func(tx *bolt.Tx) error {
		teams = map[string]struct{}{}
		for _, c := range changes {
			if err := applyChange(tx, c, teams); err != nil {
				return err
			}
		}
		return bumpTeams(tx, teams)
	})
	s.afterApply(err, teams)
	return err
}

// ReplaceRecords makes the state-of-record buckets hold exactly all (the
// whole log at one revision): the first load, and the reload after the
// log compacted away revisions this node had not seen. Keys that did not
// change are not rewritten.
func (s *Store) ReplaceRecords(all []Change) error {
	want := map[string]map[string][]byte{}
	for _, c := range all {
		if !IsRecordBucket(c.Bucket) {
			return fmt.Errorf("replace records: %q is not a state-of-record bucket", c.Bucket)
		}
		if want[c.Bucket] == nil {
			want[c.Bucket] = map[string][]byte{}
		}
		want[c.Bucket][string(c.Key)] = c.Value
	}
	var teams map[string]struct{}
	err := s.update(func(tx *bolt.Tx) error {
		teams = map[string]struct{}{}
		for _, name := range recordBuckets {
			b := tx.Bucket(name)
			w := want[string(name)]
			var stale [][]byte
			if err := b.ForEach(func(k, v []byte) error {
				if nv, ok := w[string(k)]; !ok {
					stale = append(stale, bytes.Clone(k))
				} else if bytes.Equal(nv, v) {
					delete(w, string(k)) // already as the log has it
				}
				return nil
			}); err != nil {
				return err
			}
			for _, k := range stale {
				if err := applyChange(tx, Change{Bucket: string(name), Key: k}, teams); err != nil {
					return err
				}
			}
			for k, v := range w {
				if err := applyChange(tx, Change{Bucket: string(name), Key: []byte(k), Value: v}, teams); err != nil {
					return err
				}
			}
		}
		return bumpTeams(tx, teams)
	})
	s.afterApply(err, teams)
	return err
}

// ExportRecords calls fn with every key of the state-of-record buckets,
// in bucket then key order (cluster import).
func (s *Store) ExportRecords(fn func(Change) error) error {
	return s.view(func(tx *bolt.Tx) error {
		for _, name := range recordBuckets {
			if err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				return fn(Change{Bucket: string(name), Key: bytes.Clone(k), Value: nonNil(v)})
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// CountRecords counts the keys of the state-of-record buckets: a node
// joining a cluster whose log is empty must not have any (its records
// would silently vanish from its view; `cluster import` moves them in).
func (s *Store) CountRecords() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		for _, name := range recordBuckets {
			n += tx.Bucket(name).Stats().KeyN
		}
		return nil
	})
	return n, err
}

// applyChange writes one change and notes the team of a provider it
// touched (old or new owner).
func applyChange(tx *bolt.Tx, c Change, teams map[string]struct{}) error {
	if !IsRecordBucket(c.Bucket) {
		return fmt.Errorf("apply: %q is not a state-of-record bucket", c.Bucket)
	}
	b := tx.Bucket([]byte(c.Bucket))
	if c.Bucket == string(bProviders) {
		for _, v := range [][]byte{b.Get(c.Key), c.Value} {
			var p struct {
				TeamID string `json:"team_id"`
			}
			if len(v) > 0 && json.Unmarshal(v, &p) == nil && p.TeamID != "" {
				teams[p.TeamID] = struct{}{}
			}
		}
	}
	if c.Value == nil {
		return b.Delete(c.Key)
	}
	return b.Put(c.Key, c.Value)
}

// bumpTeams counts up the wake generation of every team whose providers
// an apply changed, as the writing node's own transaction did.
func bumpTeams(tx *bolt.Tx, teams map[string]struct{}) error {
	for t := range teams {
		if err := bumpWakeGen(tx, t); err != nil {
			return err
		}
	}
	return nil
}

// afterApply tells provider readers (the scheduler's caches) after the
// commit, as the store's own provider writes do.
func (s *Store) afterApply(err error, teams map[string]struct{}) {
	if err != nil {
		return
	}
	for t := range teams {
		s.providersChanged(nil, t)
	}
}
