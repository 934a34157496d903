package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/store"
)

// Idempotency keeps the records of Idempotency-Key requests (SPEC §3) in
// etcd, so that a retry that the balancer sends to another node is
// recognised: the first answer is replayed, or 409 while the first
// request is still being served, by the same rules as a single node's
// store (store.BeginIdempotent and its siblings, which it stands in for).
//
// Key layout: P idem/<credential ID>/<Idempotency-Key>, value the
// store.IdempotencyRecord as JSON (its body sealed by the caller).
//
// The crash window is covered by where each record lives. A record in
// flight is written before the work starts, on this node's membership
// lease: if the process dies mid-request the lease ends (10 s) and takes
// the record with it, so the client's retry runs the request again,
// which is the single node's rule for a record a dead process left in
// flight. A finished record is rewritten, only if it is still the one
// this request wrote, on a lease shared by every record finished for
// requests begun in the same hour, which ends 24 h after that hour
// (IdempotencyTTL): etcd forgets records by itself, and one lease per
// hour per node keeps that cheap. A record past its 24 h that its lease
// still holds is treated as absent, as on a single node.
//
// With etcd unreachable, Begin answers store.ErrUnavailable (the API's
// 503 cluster_unavailable, retryable): running the request without a
// record could send a message twice when the retry lands elsewhere.
type Idempotency struct {
	n      *Node
	hours  *bucketLeases
	budget *idemBudget
	// mine holds the records this process put in flight and the etcd
	// revision it wrote each at, so that Finish and Release change a
	// record only while it is still that one, in one transaction.
	mu   sync.Mutex
	mine map[string]claimed
	// busy counts, per key, this process's uses of the record: a Begin
	// under way, the request that owns it, an end retried in the
	// background. A record in flight under this process's owner that
	// nothing here uses is an orphan (see orphan).
	busy map[string]int

	// later's queue of ends etcd did not take (see later).
	lateMu       sync.Mutex
	late         []*lateEnd
	lateBytes    int
	lateRunning  bool
	lateMaxBytes int
	lateMaxEnds  int
}

// claimed is an in-flight record as this process wrote it.
type claimed struct {
	rev int64
	rec store.IdempotencyRecord
}

// Idempotency returns the node's etcd-backed idempotency records.
func (n *Node) Idempotency() *Idempotency {
	n.idemOnce.Do(func() {
		total := n.cfg.IdemTeamBytes
		if total == 0 {
			total = DefaultIdemTeamBytes
		}
		n.idem = &Idempotency{n: n, hours: newBucketLeases(n, time.Hour, store.IdempotencyTTL),
			budget: &idemBudget{n: n, total: total, teams: map[string]*[24]hourUse{}},
			mine:   map[string]claimed{}, busy: map[string]int{}, lateMaxBytes: lateMaxBytes, lateMaxEnds: lateMaxEnds}
	})
	return n.idem
}

// AdmitIdempotent reports whether team may have one more record kept in
// etcd now (httpapi.IdempotencyBudget); when not, the team's budget in
// bytes per 24 h and how long until room frees up.
func (ix *Idempotency) AdmitIdempotent(team string, now time.Time) (bool, int64, time.Duration) {
	ok, retry := ix.budget.admit(team, now)
	return ok, ix.budget.total, retry
}

// ChargeIdempotent counts a record of about size bytes kept for team.
func (ix *Idempotency) ChargeIdempotent(team string, now time.Time, size int) {
	ix.budget.charge(team, now, size)
}

func (ix *Idempotency) key(credID, key string) string {
	return ix.n.cfg.Prefix + "idem/" + credID + "/" + key
}

// maxClaimRounds bounds Begin's rounds against concurrent claims of one
// expired record.
const maxClaimRounds = 4

// BeginIdempotent claims key for credID, as store.BeginIdempotent: nil
// when this request now owns an in-flight record (end it with
// FinishIdempotent or ReleaseIdempotent), else the live record to compare
// and replay. Claims are etcd transactions, so two nodes can never both
// own a key.
func (ix *Idempotency) BeginIdempotent(credID, key string, hash []byte, owner string, now time.Time, ttl time.Duration) (*store.IdempotencyRecord, error) {
	k := ix.key(credID, key)
	rec := store.IdempotencyRecord{Key: key, CredentialID: credID, RequestHash: hash,
		State: store.IdemInFlight, Owner: owner, CreatedAt: now}
	val, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	ctx, cancel := ix.n.opCtx()
	defer cancel()
	lease, err := ix.n.liveMemberLease(ctx)
	if err != nil {
		return nil, err
	}
	claim := clientv3.OpPut(k, string(val), clientv3.WithLease(lease))
	ix.hold(k)
	defer ix.unhold(k) // a successful claim took a hold of its own (own)
	for range maxClaimRounds {
		// Claim it if absent, else read it: one round trip either way.
		resp, err := ix.n.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(claim).Else(clientv3.OpGet(k)).Commit()
		if err != nil {
			ix.forgetLostClaim(k, string(val))
			return nil, unavailable("claiming an idempotency key", err)
		}
		ix.n.contact()
		if resp.Succeeded {
			ix.own(k, claimed{resp.Header.Revision, rec})
			return nil, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // its lease ended between the compare and the read
		}
		var old store.IdempotencyRecord
		if err := json.Unmarshal(kvs[0].Value, &old); err != nil {
			return nil, err
		}
		if now.Before(old.CreatedAt.Add(ttl)) && !ix.orphan(k, &old, owner) {
			return &old, nil
		}
		// Expired (its hour's lease not yet ended), or orphaned: take it
		// over, unless another request did first.
		resp, err = ix.n.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", kvs[0].ModRevision)).
			Then(claim).Commit()
		if err != nil {
			ix.forgetLostClaim(k, string(val))
			return nil, unavailable("claiming an idempotency key", err)
		}
		if resp.Succeeded {
			ix.own(k, claimed{resp.Header.Revision, rec})
			return nil, nil
		}
	}
	return nil, unavailable("claiming an idempotency key", errors.New("too many concurrent claims"))
}

// forgetLostClaim deletes, in the background (later's queue), the claim
// of a Begin whose transaction errored: etcd may have committed it with
// the answer lost on the way back, and then nothing ends it. A retry on
// this node takes such an orphan over (orphan), but one on another node
// would get 409 for as long as this node's membership lease lives. The
// delete holds only while the value is still the one this Begin wrote
// (its owner and nanosecond time name it): a claim that never committed,
// or one taken over since, is left alone.
func (ix *Idempotency) forgetLostClaim(k, val string) {
	del := func(ctx context.Context) error {
		_, err := ix.n.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", val)).Then(clientv3.OpDelete(k)).Commit()
		return err
	}
	ix.later(&lateEnd{write: del, drop: del, done: func() {}, since: time.Now()})
}

// FinishIdempotent stores the answer of the in-flight record this
// process holds, on its hour's 24 h lease. A record that is gone or
// taken over meanwhile is left alone. When etcd does not take the write
// it is retried in the background (see later): a record left in flight
// on a live node's lease would answer 409 to every retry.
func (ix *Idempotency) FinishIdempotent(credID, key, owner string, status int, header map[string]string, body []byte) error {
	k := ix.key(credID, key)
	c, ok := ix.release(k)
	if !ok {
		return nil
	}
	rec := c.rec
	rec.State, rec.Owner, rec.Status, rec.Header, rec.Body = store.IdemDone, "", status, header, body
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if len(val) > maxRecordBytes {
		// etcd would refuse it now and at every retry: drop the record
		// at once rather than keep it in flight (409 to the client's
		// retries) while later holds it in memory for two minutes.
		ix.end(k, c.rev, 0, nil)
		return fmt.Errorf("idempotency record of %d bytes is too large to keep in etcd (at most %d); a retry runs the request again", len(val), maxRecordBytes)
	}
	finish := func(ctx context.Context) error {
		lease, err := ix.hours.get(ctx, rec.CreatedAt)
		if err != nil {
			return err
		}
		put := clientv3.OpPut(k, string(val), clientv3.WithLease(lease))
		// Still our claim: finish it. Gone: the membership lease it sat
		// on ended while the request ran (etcd out of reach for the
		// lease's life), yet the work was done, so the answer is
		// written if no other request claimed the key meanwhile; without
		// it a retry on another node would run the request again.
		resp, err := ix.n.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", c.rev)).
			Then(put).
			Else(clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)}, []clientv3.Op{put}, nil)).
			Commit()
		if leaseGone(err) {
			ix.hours.forget(rec.CreatedAt, lease) // the next try grants anew
		}
		if err == nil && !resp.Succeeded && resp.Responses[0].GetResponseTxn().GetSucceeded() {
			ix.n.log.Warn("an idempotency record in flight was gone when its answer was ready (its membership lease ended); the answer was stored anyway")
		}
		return err
	}
	return ix.end(k, c.rev, len(val), finish)
}

// ReleaseIdempotent drops the in-flight record this process holds, so
// that a retry runs the request again.
func (ix *Idempotency) ReleaseIdempotent(credID, key, owner string) error {
	k := ix.key(credID, key)
	c, ok := ix.release(k)
	if !ok {
		return nil
	}
	return ix.end(k, c.rev, 0, nil)
}

// maxRecordBytes bounds a finished record (its answer sealed, then
// base64 in JSON), below etcd's default --max-request-bytes (1.5 MiB) and
// the client's 2 MiB send limit. Answers are small (error echoes are
// bounded by httpapi); only a batch of 100 sends each with dozens of
// invalid fields comes near.
const maxRecordBytes = 1 << 20

// Patience of later: how long a finished answer is retried, then how long
// dropping the record is.
const (
	finishRetries = 60
	finishEvery   = time.Second
)

// end runs write (nil: drop the record) once; if etcd does not take it,
// later keeps trying, and the error is returned for the caller's log.
// size is what write holds in memory (the answer) while it waits.
func (ix *Idempotency) end(k string, rev int64, size int, write func(context.Context) error) error {
	drop := func(ctx context.Context) error {
		_, err := ix.n.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpDelete(k)).Commit()
		return err
	}
	if write == nil {
		write, size = drop, 0
	}
	ctx, cancel := ix.n.opCtx()
	err := write(ctx)
	cancel()
	if err == nil {
		ix.n.contact()
		ix.unhold(k)
		return nil
	}
	// The record stays this process's until later is done with it: an
	// orphan is taken over, a record whose answer is on its way is not.
	ix.later(&lateEnd{write: write, drop: drop, done: func() { ix.unhold(k) }, size: size, since: time.Now()})
	return unavailable("ending an idempotency record (retrying in the background)", err)
}

// Bounds of later's queue during an outage: the answers it holds, and
// the ends it keeps at all. Past the first an end only drops its record
// (as an answer too large to keep: a retry runs again); past the second
// it is given up, and the record ends with this node's membership lease.
const (
	lateMaxBytes = 16 << 20
	lateMaxEnds  = 4096
)

// lateEnd is one record end waiting for etcd.
type lateEnd struct {
	write, drop func(context.Context) error
	done        func()
	size        int
	since       time.Time
}

// later queues an end that etcd did not take. One worker retries the
// queue in order every second: the answer for a minute, then dropping
// the record for another (an answer stored late still spares the
// retries a second run, and a record that cannot be finished must at
// least not stay in flight, 409 to every retry, for as long as this node
// lives). Both compare the record's revision, so a record taken over
// meanwhile is left alone. One worker and a capped queue keep an outage
// from costing a goroutine and an answer in memory per request.
func (ix *Idempotency) later(e *lateEnd) {
	ix.lateMu.Lock()
	defer ix.lateMu.Unlock()
	if len(ix.late) >= ix.lateMaxEnds {
		e.done()
		ix.n.log.Warn("too many idempotency records wait for etcd; this one ends with this node's membership lease")
		return
	}
	if e.size > 0 && ix.lateBytes+e.size > ix.lateMaxBytes {
		e.write, e.size = e.drop, 0 // not kept: a retry runs again
	}
	ix.late = append(ix.late, e)
	ix.lateBytes += e.size
	if !ix.lateRunning {
		ix.lateRunning = true
		ix.n.wg.Add(1)
		go ix.lateWorker()
	}
}

// lateWorker runs later's queue until it is empty or the node closes.
func (ix *Idempotency) lateWorker() {
	defer ix.n.wg.Done()
	for {
		select {
		case <-ix.n.ctx.Done():
			ix.lateMu.Lock()
			for _, e := range ix.late {
				e.done()
			}
			ix.late, ix.lateBytes, ix.lateRunning = nil, 0, false
			ix.lateMu.Unlock()
			return
		case <-time.After(finishEvery):
		}
		ix.lateMu.Lock()
		queue := slices.Clone(ix.late)
		ix.lateMu.Unlock()
		finished := map[*lateEnd]bool{}
		for _, e := range queue {
			age := time.Since(e.since)
			if age >= 2*finishRetries*finishEvery {
				ix.n.log.Warn("an idempotency record could not be ended in etcd; it ends with this node's membership lease")
				finished[e] = true
				continue
			}
			try := e.write
			if age >= finishRetries*finishEvery {
				try = e.drop
			}
			ctx, cancel := ix.n.opCtx()
			err := try(ctx)
			cancel()
			if err != nil {
				break // etcd is still away: the rest waits for the next round
			}
			ix.n.contact()
			finished[e] = true
		}
		ix.lateMu.Lock()
		kept := ix.late[:0]
		for _, e := range ix.late {
			if finished[e] {
				ix.lateBytes -= e.size
				e.done()
			} else {
				kept = append(kept, e)
			}
		}
		ix.late = kept
		if len(ix.late) == 0 {
			ix.lateRunning = false
			ix.lateMu.Unlock()
			return
		}
		ix.lateMu.Unlock()
	}
}

func (ix *Idempotency) own(k string, c claimed) {
	ix.mu.Lock()
	ix.mine[k] = c
	ix.busy[k]++ // let go by end
	ix.mu.Unlock()
}

func (ix *Idempotency) hold(k string) {
	ix.mu.Lock()
	ix.busy[k]++
	ix.mu.Unlock()
}

func (ix *Idempotency) unhold(k string) {
	ix.mu.Lock()
	if ix.busy[k]--; ix.busy[k] <= 0 {
		delete(ix.busy, k)
	}
	ix.mu.Unlock()
}

// orphan reports an in-flight record that this process wrote (its
// owner) but no request of it serves: the claim's transaction committed
// in etcd while its answer was lost (a timeout on the way back), so the
// Begin that wrote it returned an error and nothing will end it. It sits
// on the live membership lease, and would answer 409 to every retry for
// its whole 24 h. The caller (Begin) holds the only use of the key.
func (ix *Idempotency) orphan(k string, rec *store.IdempotencyRecord, owner string) bool {
	if rec.State != store.IdemInFlight || rec.Owner != owner {
		return false
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.busy[k] == 1
}

func (ix *Idempotency) release(k string) (claimed, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	rev, ok := ix.mine[k]
	delete(ix.mine, k)
	return rev, ok
}

// liveMemberLease is the node's membership lease, waiting (within ctx)
// for the node to register when it has not yet, or not again.
func (n *Node) liveMemberLease(ctx context.Context) (clientv3.LeaseID, error) {
	for {
		if id := n.memberLease.Load(); id != 0 {
			return clientv3.LeaseID(id), nil
		}
		select {
		case <-ctx.Done():
			return 0, unavailable("waiting for this node's membership lease", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
