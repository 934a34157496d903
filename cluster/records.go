package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/store"
)

// Key layout under the prefix P:
//
//	P records/<bucket>/<key>   one key of a state-of-record bucket, value as in bbolt
//	P records/.seq             the write counter: every write transaction puts it
//	P canary                   the sealed canary (canary.go)
//	P nodes/<node_id>          membership, under each node's lease (members.go)
//	P locks/…                  etcd mutexes (bootstrap)
//	P idem/<cred>/<key>        Idempotency-Key records (idempotency.go)
//	P oauth/…                  pending OAuth connect flows (oauth_states.go)
//
// Records keep bbolt's bucket keys byte for byte, so a node's view is
// the log's keys with the prefix cut off. Bucket names never contain
// '/', so the first '/' after records/ ends the bucket whatever bytes an
// ID or an address holds; a key can only ever name a state-of-record
// bucket (anything else is refused on apply).
//
// Why one counter for every write, not a compare on each record's
// mod_revision: a write's rules read more than the keys it writes (the
// team's provider count against its limit, a name's uniqueness, a
// group's members). Comparing the counter makes every state-of-record
// write serializable against the view it was computed on, with one
// compare; a write that lost the race is re-run on the newer view. The
// cost is that management writes of different teams retry each other,
// which at their rate (people and scripts, not mail) is nothing.

var errUnavailable = store.ErrUnavailable

// recordStore is what the node needs of the store.
type recordStore interface {
	ApplyChanges([]store.Change) error
	ReplaceRecords([]store.Change) error
	CountRecords() (int, error)
	SetReplicator(store.Replicator)
}

func (n *Node) recordsPrefix() string { return n.cfg.Prefix + "records/" }
func (n *Node) seqKey() string        { return n.recordsPrefix() + ".seq" }

// recordKey is the etcd key of one bucket key.
func (n *Node) recordKey(bucket string, key []byte) string {
	return n.recordsPrefix() + bucket + "/" + string(key)
}

// parseRecordKey splits an etcd key under records/ into a bucket and a
// bucket key; ok is false for the counter and for anything malformed.
func (n *Node) parseRecordKey(k []byte) (bucket string, key []byte, ok bool) {
	rest, found := strings.CutPrefix(string(k), n.recordsPrefix())
	if !found {
		return "", nil, false
	}
	bucket, tail, found := strings.Cut(rest, "/")
	if !found || !store.IsRecordBucket(bucket) {
		return "", nil, false
	}
	return bucket, []byte(tail), true
}

// ErrLogEmpty is Attach's refusal when etcd holds no state of record but
// this node's file does: joining would drop those records from the view.
var ErrLogEmpty = errors.New("etcd holds no state of record yet, but this node's store does")

// Attach makes st this node's view: it loads the whole state of record
// at one revision, starts the watch from the next one, and sends st's
// state-of-record writes to etcd from then on.
func (n *Node) Attach(st recordStore) error {
	n.st = st
	ctx, cancel := n.opCtx()
	defer cancel()
	rev, seq, changes, err := n.snapshot(ctx)
	if err != nil {
		return unavailable("loading the state of record", err)
	}
	if seq == 0 {
		if have, err := st.CountRecords(); err != nil {
			return err
		} else if have > 0 {
			return fmt.Errorf("%w (%d keys): run `smtpmux cluster import --from <data_dir>/smtpmux.db` first, or start this node on an empty data_dir", ErrLogEmpty, have)
		}
	}
	if err := st.ReplaceRecords(changes); err != nil {
		return err
	}
	n.setApplied(rev, seq)
	n.contact()
	st.SetReplicator(n)
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.watchLoop() }()
	return nil
}

// Join checks the canary and attaches st. When etcd cannot be reached
// and this node has a view from an earlier run, it starts on that view
// instead of refusing: the node's own spool must keep moving through an
// etcd outage, restarts included. Management writes answer 503 until
// etcd returns; then the canary is checked and the view reloaded. A key
// that fails the canary then stops every write (and says so in the log).
func (n *Node) Join(st recordStore, s *store.Sealer) error {
	err := n.CheckCanary(s)
	if err == nil {
		return n.Attach(st)
	}
	if !errors.Is(err, errUnavailable) {
		return err
	}
	have, cerr := st.CountRecords()
	if cerr != nil {
		return cerr
	}
	if have == 0 {
		return err // nothing to serve from
	}
	n.log.Warn("etcd cannot be reached at start; serving from this node's last view until it returns", "err", err)
	n.st = st
	st.SetReplicator(n)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			err := n.CheckCanary(s)
			if err == nil {
				break
			}
			if !errors.Is(err, errUnavailable) {
				n.log.Error("refusing every state-of-record write", "err", err)
				n.refused.Store(&err)
				return
			}
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		n.reload()
		n.log.Info("etcd is back; view reloaded", "etcd_revision", n.Applied())
		n.watchLoop()
	}()
	return nil
}

// snapshot reads every record at one revision.
func (n *Node) snapshot(ctx context.Context) (rev, seq int64, changes []store.Change, err error) {
	resp, err := n.cli.Get(ctx, n.recordsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, 0, nil, err
	}
	for _, kv := range resp.Kvs {
		if string(kv.Key) == n.seqKey() {
			seq = kv.ModRevision
			continue
		}
		if b, k, ok := n.parseRecordKey(kv.Key); ok {
			changes = append(changes, store.Change{Bucket: b, Key: k, Value: nonNil(kv.Value)})
		}
	}
	return resp.Header.Revision, seq, changes, nil
}

func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// setApplied records that the view holds everything up to rev and wakes
// whoever waits for it.
func (n *Node) setApplied(rev, seq int64) {
	n.mu.Lock()
	if rev > n.applied {
		n.applied = rev
	}
	if seq > n.seqRev {
		n.seqRev = seq
	}
	close(n.advance)
	n.advance = make(chan struct{})
	n.mu.Unlock()
}

// waitApplied returns once the view has applied rev, or ctx ends.
func (n *Node) waitApplied(ctx context.Context, rev int64) error {
	for {
		n.mu.Lock()
		done, ch := n.applied >= rev, n.advance
		n.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// watchLoop keeps the view current. The client resumes a broken stream
// by itself (from the last revision it delivered); a compaction past
// what this node saw, or a watch that ends, restarts it from a fresh
// snapshot or from the applied revision.
func (n *Node) watchLoop() {
	for n.ctx.Err() == nil {
		n.mu.Lock()
		from := n.applied + 1
		n.mu.Unlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(n.ctx))
		wch := n.cli.Watch(wctx, n.recordsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
		n.watching.Store(true)
		for resp := range wch {
			if resp.CompactRevision != 0 {
				n.log.Warn("etcd compacted past this node's view; reloading the state of record", "compacted", resp.CompactRevision)
				n.reload()
				break
			}
			if err := resp.Err(); err != nil {
				n.log.Warn("etcd watch ended", "err", err)
				break
			}
			n.contact()
			if err := n.applyEvents(resp); err != nil {
				n.log.Error("applying the state of record", "err", err)
				break
			}
		}
		cancel()
		n.watching.Store(false)
		select {
		case <-n.ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// applyEvents writes one watch response into the view.
func (n *Node) applyEvents(resp clientv3.WatchResponse) error {
	var changes []store.Change
	var seq, last int64
	for _, ev := range resp.Events {
		last = ev.Kv.ModRevision
		if string(ev.Kv.Key) == n.seqKey() {
			if ev.Type == mvccpb.PUT {
				seq = ev.Kv.ModRevision
			}
			continue
		}
		b, k, ok := n.parseRecordKey(ev.Kv.Key)
		if !ok {
			n.log.Warn("ignoring a key outside the record layout", "key", fmt.Sprintf("%.80q", ev.Kv.Key))
			continue
		}
		c := store.Change{Bucket: b, Key: k}
		if ev.Type == mvccpb.PUT {
			c.Value = nonNil(ev.Kv.Value)
		}
		changes = append(changes, c)
	}
	if len(changes) > 0 {
		if err := n.st.ApplyChanges(changes); err != nil {
			return err
		}
	}
	if resp.IsProgressNotify() {
		last = resp.Header.Revision
	}
	if last > 0 {
		n.setApplied(last, seq)
	}
	return nil
}

// reload replaces the view with a fresh snapshot (after a compaction).
func (n *Node) reload() {
	for n.ctx.Err() == nil {
		ctx, cancel := n.opCtx()
		rev, seq, changes, err := n.snapshot(ctx)
		cancel()
		if err == nil {
			if err = n.st.ReplaceRecords(changes); err == nil {
				n.setApplied(rev, seq)
				return
			}
		}
		n.log.Warn("reloading the state of record", "err", err)
		select {
		case <-n.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Begin implements store.Replicator: it asks etcd (a linearizable read)
// for the last write's revision and waits until the view holds it.
func (n *Node) Begin() (int64, error) {
	if err := n.refused.Load(); err != nil {
		return 0, *err
	}
	ctx, cancel := n.opCtx()
	defer cancel()
	resp, err := n.cli.Get(ctx, n.seqKey())
	if err != nil {
		return 0, unavailable("reading the write counter", err)
	}
	n.contact()
	if len(resp.Kvs) > 0 {
		if err := n.waitApplied(ctx, resp.Kvs[0].ModRevision); err != nil {
			return 0, unavailable("catching up with the state of record", err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seqRev, nil
}

// maxTxnOps is etcd's default --max-txn-ops; a write of more keys would
// be refused by etcd whole, so it is refused here with a clearer error.
const maxTxnOps = 128

// MaxChanges implements store.ChangeLimiter: the keys of one write, the
// counter aside.
func (n *Node) MaxChanges() int { return maxTxnOps - 1 }

// Commit implements store.Replicator: one etcd transaction that writes
// every changed key and the counter if the counter is still at token.
func (n *Node) Commit(token int64, changes []store.Change) error {
	if len(changes)+1 > maxTxnOps {
		return fmt.Errorf("a write of %d keys is more than etcd takes in one transaction (--max-txn-ops %d)", len(changes), maxTxnOps)
	}
	ops := make([]clientv3.Op, 0, len(changes)+1)
	for _, c := range changes {
		k := n.recordKey(c.Bucket, c.Key)
		if c.Value == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(c.Value)))
		}
	}
	ops = append(ops, clientv3.OpPut(n.seqKey(), n.cfg.NodeID))
	ctx, cancel := n.opCtx()
	defer cancel()
	resp, err := n.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(n.seqKey()), "=", token)).Then(ops...).Commit()
	if err != nil {
		// Ambiguous: etcd may have committed it. It is whole or nothing
		// either way, and the watch brings it in if it was.
		return unavailable("writing the state of record", err)
	}
	n.contact()
	if !resp.Succeeded {
		return store.ErrStale
	}
	n.etcdWrites.Add(1)
	// Read-your-writes: the answer waits for the view. The write is
	// committed; a view slow to follow is logged, not reported as failed.
	wctx, wcancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer wcancel()
	if err := n.waitApplied(wctx, resp.Header.Revision); err != nil {
		n.log.Warn("committed write not yet in this node's view", "revision", resp.Header.Revision, "err", err)
	}
	return nil
}

// WaitApplied returns once the view holds etcd revision rev, or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, rev int64) { n.waitApplied(ctx, rev) }

// Applied is the etcd revision the view holds.
func (n *Node) Applied() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applied
}
