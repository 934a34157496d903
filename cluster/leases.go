package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// bucketLeases hands out one etcd lease per time bucket for keys that
// must live at least keep after they are written (idempotency records,
// OAuth states): every key written in a bucket shares its lease, which
// ends keep after the bucket ends. One lease per bucket, not per key,
// keeps etcd's lease table and its keep-alive-free expiry work small;
// the price is that a key may outlive its keep by up to one span, which
// readers do not see (each record carries its own time and is checked
// against it).
type bucketLeases struct {
	n    *Node
	span time.Duration
	keep time.Duration

	mu  sync.Mutex
	ids map[int64]clientv3.LeaseID // bucket start (unix seconds) → lease
}

func newBucketLeases(n *Node, span, keep time.Duration) *bucketLeases {
	return &bucketLeases{n: n, span: span, keep: keep, ids: map[int64]clientv3.LeaseID{}}
}

// get returns the lease of the bucket holding at, granting it once.
// Grants are rare (one per bucket per node), so holding the lock over
// the round trip costs nothing and stops two requests granting twice.
func (b *bucketLeases) get(ctx context.Context, at time.Time) (clientv3.LeaseID, error) {
	start := at.Truncate(b.span)
	b.mu.Lock()
	defer b.mu.Unlock()
	if id, ok := b.ids[start.Unix()]; ok {
		return id, nil
	}
	// etcd counts the TTL on its own clock from the grant: the lease
	// ends keep after the bucket does, and never sooner than keep from
	// now (a clock that disagrees must not shorten a record's life).
	ttl := max(time.Until(start.Add(b.span+b.keep)), b.keep)
	resp, err := b.n.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, unavailable("granting a lease", err)
	}
	for k := range b.ids { // older buckets are not written again
		if k < start.Add(-b.span).Unix() {
			delete(b.ids, k)
		}
	}
	b.ids[start.Unix()] = resp.ID
	return resp.ID, nil
}

// forget drops the lease of at's bucket after etcd said it is gone (it
// was revoked, or etcd's data was replaced): the next get grants anew.
func (b *bucketLeases) forget(at time.Time, id clientv3.LeaseID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k := at.Truncate(b.span).Unix(); b.ids[k] == id {
		delete(b.ids, k)
	}
}

// errLeaseLost is a write whose fresh lease was gone as well.
var errLeaseLost = errors.New("its lease is gone")

// leaseGone reports etcd's answer to a write under a lease it does not
// have.
func leaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }
