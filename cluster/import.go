package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/store"
)

// ImportResult counts what an import found and did.
type ImportResult struct {
	// Keys is how many state-of-record keys the file holds.
	Keys int `json:"keys"`
	// Written is how many were missing from etcd or differed there (with
	// a dry run: would be written).
	Written int `json:"written"`
	// Unchanged were in etcd already with the same value.
	Unchanged int `json:"unchanged"`
	// Transactions is the number of etcd write transactions made.
	Transactions int `json:"transactions"`
}

// importChunk keeps each import transaction under etcd's default
// --max-txn-ops (128) with the counter put.
const importChunk = 100

// Import copies the state of record of a single node's store (src, not
// in use by a daemon) into etcd. It is idempotent: a key etcd already
// holds with the same value is not written again, so a second run writes
// nothing. It never deletes: keys in etcd that the file lacks stay. A
// team name that etcd holds under another team ID is refused (two teams
// "default" would make the name ambiguous): import into a fresh prefix,
// before any node started on it.
func (n *Node) Import(ctx context.Context, src interface {
	ExportRecords(func(store.Change) error) error
}, dryRun bool) (ImportResult, error) {
	var res ImportResult
	var all []store.Change
	if err := src.ExportRecords(func(c store.Change) error { all = append(all, c); return nil }); err != nil {
		return res, err
	}
	res.Keys = len(all)
	resp, err := n.cli.Get(ctx, n.recordsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return res, unavailable("reading etcd's state of record", err)
	}
	have := map[string][]byte{}
	names := map[string]string{} // team name → ID in etcd
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = kv.Value
		if b, _, ok := n.parseRecordKey(kv.Key); ok && b == "teams" {
			var t struct{ ID, Name string }
			if json.Unmarshal(kv.Value, &t) == nil {
				names[t.Name] = t.ID
			}
		}
	}
	var todo []clientv3.Op
	for _, c := range all {
		if c.Bucket == "teams" {
			var t struct{ ID, Name string }
			if json.Unmarshal(c.Value, &t) == nil {
				if id, ok := names[t.Name]; ok && id != t.ID {
					return res, fmt.Errorf("team %q is in etcd already as %s, in the file as %s: import into an empty key_prefix, before nodes start on it", t.Name, id, t.ID)
				}
			}
		}
		k := n.recordKey(c.Bucket, c.Key)
		if v, ok := have[k]; ok && bytes.Equal(v, c.Value) {
			res.Unchanged++
			continue
		}
		res.Written++
		todo = append(todo, clientv3.OpPut(k, string(c.Value)))
	}
	if dryRun {
		return res, nil
	}
	for len(todo) > 0 {
		m := min(len(todo), importChunk)
		// Every chunk moves the write counter, so a management write
		// prepared on a view from before it is re-run after it.
		ops := append(todo[:m:m], clientv3.OpPut(n.seqKey(), "import:"+n.cfg.NodeID))
		if _, err := n.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return res, unavailable("writing to etcd (a re-run continues where this stopped)", err)
		}
		res.Transactions++
		todo = todo[m:]
	}
	return res, nil
}
