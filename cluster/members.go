package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Member is one node's registration, the value of nodes/<node_id>.
type Member struct {
	NodeID       string    `json:"node_id"`
	AdvertiseURL string    `json:"advertise_url"`
	Version      string    `json:"version"`
	StartedAt    time.Time `json:"started_at"`
}

// defaultLeaseTTL is the membership lease in seconds: a node that stops
// without leaving (kill -9, a cut cable) drops out of the list this long
// after its last keep-alive.
const defaultLeaseTTL = 10

func (n *Node) memberKey(id string) string { return n.cfg.Prefix + "nodes/" + id }

// Register keeps this node in nodes/ under a lease until Close, granting
// a new lease whenever the old one is lost (etcd was away longer than
// its TTL). A second process with the same node_id overwrites the entry;
// the docs say node IDs must be unique.
func (n *Node) Register() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for n.ctx.Err() == nil {
			n.registerOnce()
			n.registered.Store(false)
			select {
			case <-n.ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
}

// registerOnce grants a lease, writes the entry and keeps the lease alive
// until it is lost or the node closes (then it revokes it).
func (n *Node) registerOnce() {
	ttl := n.cfg.LeaseTTL
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	ctx, cancel := n.opCtx()
	lease, err := n.cli.Grant(ctx, ttl)
	cancel()
	if err != nil {
		n.log.Warn("cluster membership: cannot grant a lease", "err", err)
		return
	}
	val, _ := json.Marshal(Member{NodeID: n.cfg.NodeID, AdvertiseURL: n.cfg.AdvertiseURL, Version: n.cfg.Version, StartedAt: n.cfg.StartedAt})
	ctx, cancel = n.opCtx()
	_, err = n.cli.Put(ctx, n.memberKey(n.cfg.NodeID), string(val), clientv3.WithLease(lease.ID))
	cancel()
	if err != nil {
		n.log.Warn("cluster membership: cannot register", "err", err)
		return
	}
	ka, err := n.cli.KeepAlive(n.ctx, lease.ID)
	if err != nil {
		return
	}
	n.registered.Store(true)
	n.memberLease.Store(int64(lease.ID))
	defer n.memberLease.Store(0)
	n.contact()
	n.log.Info("joined the cluster", "advertise_url", n.cfg.AdvertiseURL)
	for range ka {
		n.contact()
	}
	if n.ctx.Err() != nil {
		// Leaving on purpose: take the entry away now, not at the TTL.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.cli.Revoke(ctx, lease.ID)
		cancel()
		return
	}
	n.log.Warn("cluster membership lease lost; registering again")
}

// Members lists the registered nodes, by node_id.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, n.opTimeout)
	defer cancel()
	resp, err := n.cli.Get(ctx, n.cfg.Prefix+"nodes/", clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable("listing the nodes", err)
	}
	out := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m Member
		if json.Unmarshal(kv.Value, &m) != nil || m.NodeID != strings.TrimPrefix(string(kv.Key), n.cfg.Prefix+"nodes/") {
			continue // not written by a node: not shown as one
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

// State is this node's standing: "member" while its lease is alive and
// its view follows etcd, "degraded" otherwise (it serves from its last
// view; management writes answer 503).
func (n *Node) State() string {
	recent := time.Since(time.Unix(0, n.lastOK.Load())) < n.staleAfter()
	if n.registered.Load() && n.watching.Load() && recent {
		return "member"
	}
	return "degraded"
}

// staleAfter is how long without a word from etcd makes the node call
// itself degraded: a keep-alive goes out every TTL/3.
func (n *Node) staleAfter() time.Duration {
	ttl := n.cfg.LeaseTTL
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	return time.Duration(ttl) * time.Second * 2 / 3
}

// WithLock runs fn holding the etcd mutex name (under locks/), so that
// work every starting node would do (the default team, the first root
// key) is done once. fn runs on a view that holds every write committed
// before the lock was taken: the previous holder's writes are in etcd,
// but this node's watch may not have brought them yet, and fn decides
// what to create from the view.
func (n *Node) WithLock(name string, fn func() error) error {
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	sess, err := concurrency.NewSession(n.cli, concurrency.WithTTL(defaultLeaseTTL), concurrency.WithContext(ctx))
	if err != nil {
		return unavailable("opening an etcd session", err)
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, n.cfg.Prefix+"locks/"+name)
	if err := mu.Lock(ctx); err != nil {
		return unavailable("taking the "+name+" lock", err)
	}
	defer mu.Unlock(context.Background())
	if _, err := n.Begin(); err != nil {
		return err
	}
	return fn()
}
