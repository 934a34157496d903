package cluster

import (
	"context"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Lead runs job on one node of the cluster at a time: each node that
// calls Lead with the same name campaigns in an etcd election
// (elections/<name>), and only the winner runs job, with a context that
// ends when it stops being leader (its session's lease lost: etcd away
// longer than the TTL) or when ctx ends. Then the election passes to
// another node. Lead returns when ctx ends. Jobs that must run once per
// cluster (domain re-verification) use it; per-node jobs (retention of
// local bodies, webhook deliveries of local events) do not.
func (n *Node) Lead(ctx context.Context, name string, job func(context.Context)) {
	for ctx.Err() == nil {
		n.leadOnce(ctx, name, job)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) leadOnce(ctx context.Context, name string, job func(context.Context)) {
	ttl := int(n.cfg.LeaseTTL)
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	sess, err := concurrency.NewSession(n.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return
	}
	defer sess.Close()
	e := concurrency.NewElection(sess, n.cfg.Prefix+"elections/"+name)
	// Campaign, cut by ctx, resigns with the client's own context, which
	// blocks while etcd is away: shutdown must not wait for it. The
	// client's Close ends it.
	won := make(chan error, 1)
	go func() { won <- e.Campaign(ctx, n.cfg.NodeID) }()
	select {
	case err := <-won:
		if err != nil {
			return
		}
	case <-ctx.Done():
		return
	}
	n.log.Info("leading a cluster job", "job", name)
	jctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
		case <-jctx.Done():
		}
		cancel()
	}()
	job(jctx)
	cancel()
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	e.Resign(rctx)
	rcancel()
}
