package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/store"
)

// TestIdempotencyOnEtcd runs the single node's idempotency rules across
// two nodes on a real etcd: a key claimed on one node is in flight on the
// other, its answer is replayed there, a record its process left in
// flight ends with that process's lease, a released or expired record
// can be claimed again, finished records share one lease per hour that
// outlives the 24 h, and with etcd away a claim is refused, not run
// without a record.
func TestIdempotencyOnEtcd(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	a, _ := testNode(t, eps, "a")
	b, _ := testNode(t, eps, "b")
	c, _ := testNode(t, eps, "c")
	ia, ib, ic := a.Idempotency(), b.Idempotency(), c.Idempotency()
	now := time.Now().UTC()
	ttl := store.IdempotencyTTL
	hash := []byte("h1")
	claim := func(ix *Idempotency, key, owner string, at time.Time) *store.IdempotencyRecord {
		t.Helper()
		rec, err := ix.BeginIdempotent("key_1", key, hash, owner, at, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}

	if rec := claim(ia, "k1", "pa", now); rec != nil {
		t.Fatalf("first claim: %+v", rec)
	}
	if rec := claim(ib, "k1", "pb", now); rec == nil || rec.State != store.IdemInFlight || string(rec.RequestHash) != "h1" {
		t.Fatalf("claim on b while a serves it: %+v", rec)
	}
	if err := ia.FinishIdempotent("key_1", "k1", "pa", 201, map[string]string{"Location": "/x"}, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	rec := claim(ib, "k1", "pb", now.Add(time.Minute))
	if rec == nil || rec.State != store.IdemDone || rec.Status != 201 || string(rec.Body) != "sealed" || rec.Header["Location"] != "/x" {
		t.Fatalf("replay on b: %+v", rec)
	}
	// Past its 24 h the record is gone as far as callers can tell, even
	// while its hour's lease still holds it.
	if rec := claim(ib, "k1", "pb", now.Add(ttl)); rec != nil {
		t.Fatalf("an expired record was live: %+v", rec)
	}
	ib.ReleaseIdempotent("key_1", "k1", "pb")

	// Finished records of one hour share one lease, ending at least 24 h
	// after the record (and within the hour after that).
	claim(ia, "k2", "pa", now)
	ia.FinishIdempotent("key_1", "k2", "pa", 200, nil, nil)
	claim(ia, "k3", "pa", now)
	ia.FinishIdempotent("key_1", "k3", "pa", 200, nil, nil)
	ctx := context.Background()
	g2, _ := a.cli.Get(ctx, "/t/idem/key_1/k2")
	g3, _ := a.cli.Get(ctx, "/t/idem/key_1/k3")
	if len(g2.Kvs) != 1 || len(g3.Kvs) != 1 || g2.Kvs[0].Lease == 0 || g2.Kvs[0].Lease != g3.Kvs[0].Lease {
		t.Fatalf("finished records' leases: %v %v", g2.Kvs, g3.Kvs)
	}
	ttlResp, err := a.cli.TimeToLive(ctx, clientv3.LeaseID(g2.Kvs[0].Lease))
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Duration(ttlResp.TTL) * time.Second; left < ttl-time.Minute || left > ttl+time.Hour+time.Minute {
		t.Fatalf("the hour's lease has %v left", left)
	}

	// Released: the retry runs again, on any node.
	claim(ia, "k4", "pa", now)
	if err := ia.ReleaseIdempotent("key_1", "k4", "pa"); err != nil {
		t.Fatal(err)
	}
	if rec := claim(ib, "k4", "pb", now); rec != nil {
		t.Fatalf("a released key: %+v", rec)
	}

	// The crash window: c claims, then its process goes before the
	// answer is stored. The in-flight record lives on c's membership
	// lease, which ends with it, so the retry is not refused for ever.
	if rec := claim(ic, "k5", "pc", now); rec != nil {
		t.Fatalf("claim on c: %+v", rec)
	}
	if rec := claim(ib, "k5", "pb", now); rec == nil || rec.State != store.IdemInFlight {
		t.Fatalf("while c serves it: %+v", rec)
	}
	c.Close()
	if rec := claim(ib, "k5", "pb", now); rec != nil {
		t.Fatalf("a record left in flight by a process that is gone: %+v", rec)
	}

	// etcd away when the answer is to be stored: the claim of a new key
	// is refused, and the answer is stored once etcd is back, so that
	// the record does not stay in flight (409 to every retry) while its
	// node lives. d's membership lease outlasts the outage.
	d := leasedNode(t, eps, "d", 10)
	id := d.Idempotency()
	if rec := claim(id, "k7", "pd", now); rec != nil {
		t.Fatalf("claim on d: %+v", rec)
	}
	etcd.StopAll()
	if _, err := ia.BeginIdempotent("key_1", "k6", hash, "pa", now, ttl); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("claim with etcd down: %v", err)
	}
	if err := id.FinishIdempotent("key_1", "k7", "pd", 200, nil, []byte("late")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("finish with etcd down: %v", err)
	}
	etcd.StartAll()
	waitFor(t, "the answer stored after etcd returned", 20*time.Second, func() bool {
		rec, err := ib.BeginIdempotent("key_1", "k7", hash, "pb", now, ttl)
		return err == nil && rec != nil && rec.State == store.IdemDone && string(rec.Body) == "late"
	})
}

// leasedNode is testNode with a membership lease of ttl seconds.
func leasedNode(t *testing.T, eps []string, id string, ttl int64) *Node {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Open(Config{Endpoints: eps, Prefix: "/t/", NodeID: id, Version: "test", StartedAt: time.Now(), OpTimeout: time.Second, LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Attach(st); err != nil {
		t.Fatal(err)
	}
	n.Register()
	t.Cleanup(func() { n.Close(); st.Close() })
	return n
}

// TestIdempotencyOrphanedClaim: a claim etcd committed but whose answer
// never reached this process (the transaction timed out on the way back)
// leaves a record in flight, owned by this process yet served by no
// request of it, on the live membership lease. The retry must take it
// over, not answer 409 for the record's 24 h; a record this process is
// still serving, or still storing the answer of, must not be taken.
func TestIdempotencyOrphanedClaim(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a, _ := testNode(t, etcd.Endpoints(), "a")
	ia := a.Idempotency()
	now := time.Now().UTC()
	ttl := store.IdempotencyTTL
	hash := []byte("h1")

	// What the committed claim wrote, as BeginIdempotent writes it.
	ctx := context.Background()
	lease, err := a.liveMemberLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	val, _ := json.Marshal(store.IdempotencyRecord{Key: "k1", CredentialID: "key_1", RequestHash: hash,
		State: store.IdemInFlight, Owner: "pa", CreatedAt: now})
	if _, err := a.cli.Put(ctx, ia.key("key_1", "k1"), string(val), clientv3.WithLease(lease)); err != nil {
		t.Fatal(err)
	}
	rec, err := ia.BeginIdempotent("key_1", "k1", hash, "pa", now.Add(time.Second), ttl)
	if err != nil || rec != nil {
		t.Fatalf("retry of a claim this process lost track of: %+v %v, want it claimed", rec, err)
	}
	// Now it is served: a second request of this process gets 409.
	if rec, err := ia.BeginIdempotent("key_1", "k1", hash, "pa", now.Add(time.Second), ttl); err != nil || rec == nil || rec.State != store.IdemInFlight {
		t.Fatalf("while this process serves it: %+v %v", rec, err)
	}
	if err := ia.FinishIdempotent("key_1", "k1", "pa", 200, nil, []byte("once")); err != nil {
		t.Fatal(err)
	}
	if rec, err := ia.BeginIdempotent("key_1", "k1", hash, "pa", now.Add(time.Second), ttl); err != nil || rec == nil || string(rec.Body) != "once" {
		t.Fatalf("replay: %+v %v", rec, err)
	}
	// Another process's (node's) record in flight is never taken.
	if _, err := a.cli.Put(ctx, ia.key("key_1", "k2"), string(val), clientv3.WithLease(lease)); err != nil {
		t.Fatal(err)
	}
	if rec, err := ia.BeginIdempotent("key_1", "k2", hash, "pb", now.Add(time.Second), ttl); err != nil || rec == nil || rec.State != store.IdemInFlight {
		t.Fatalf("another owner's record: %+v %v, want it in flight", rec, err)
	}
}

// TestIdempotencyAnswerTooLargeForEtcd (hostile tenant): an answer whose
// record etcd would refuse (past its request limit, 1.5 MiB by default;
// a batch of invalid sends answers that much) can never be stored. It
// must not stay in flight, answering 409 to every retry while this node
// retries the write from memory for two minutes: the record is dropped
// at once, as a request whose answer is not kept.
func TestIdempotencyAnswerTooLargeForEtcd(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a, _ := testNode(t, etcd.Endpoints(), "a")
	ix := a.Idempotency()
	now := time.Now().UTC()
	if rec, err := ix.BeginIdempotent("key_1", "big", []byte("h"), "pa", now, store.IdempotencyTTL); rec != nil || err != nil {
		t.Fatalf("claim: %+v %v", rec, err)
	}
	ix.FinishIdempotent("key_1", "big", "pa", 422, nil, make([]byte, 2<<20)) // an error for the log
	rec, err := ix.BeginIdempotent("key_1", "big", []byte("h"), "pb", now, store.IdempotencyTTL)
	if err != nil || rec != nil {
		t.Fatalf("a retry after an answer too large to keep: %+v %v (want a fresh claim)", rec, err)
	}
}

// TestIdempotencyFinishAfterLeaseLost: the membership lease the
// in-flight record sat on ended while the request ran (etcd out of reach
// for the lease's life), taking the record. The work was done, so its
// answer must still be stored when the key is free: otherwise a retry on
// another node runs the request again. A key another request claimed
// meanwhile is left alone.
func TestIdempotencyFinishAfterLeaseLost(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a := leasedNode(t, etcd.Endpoints(), "a", 30)
	b, _ := testNode(t, etcd.Endpoints(), "b")
	ia, ib := a.Idempotency(), b.Idempotency()
	now := time.Now().UTC()
	ttl := store.IdempotencyTTL
	for _, k := range []string{"k1", "k2"} {
		if rec, err := ia.BeginIdempotent("key_1", k, []byte("h"), "pa", now, ttl); rec != nil || err != nil {
			t.Fatalf("claim %s: %+v %v", k, rec, err)
		}
	}
	ctx := context.Background()
	lease, err := a.liveMemberLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	// k2 is claimed by another request meanwhile: its record stays.
	if rec, err := ib.BeginIdempotent("key_1", "k2", []byte("h"), "pb", now, ttl); rec != nil || err != nil {
		t.Fatalf("claim of k2 on b: %+v %v", rec, err)
	}
	for _, k := range []string{"k1", "k2"} {
		if err := ia.FinishIdempotent("key_1", k, "pa", 200, nil, []byte("done")); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := ib.BeginIdempotent("key_1", "k1", []byte("h"), "pb", now, ttl)
	if err != nil || rec == nil || rec.State != store.IdemDone || string(rec.Body) != "done" {
		t.Fatalf("retry on b after a's lease ended mid-request: %+v %v (want the answer replayed)", rec, err)
	}
	if rec, err := ia.BeginIdempotent("key_1", "k2", []byte("h"), "pa", now, ttl); err != nil || rec == nil || rec.State != store.IdemInFlight || rec.Owner != "pb" {
		t.Fatalf("k2, claimed by b meanwhile: %+v %v", rec, err)
	}
}

// TestIdempotencyLaterBounded: during an etcd outage the answers that
// wait in memory to be stored are bounded: past the cap a record is only
// dropped once etcd is back (a retry runs again, as for an answer too
// large to keep), and past the count cap it is left to the membership
// lease, instead of one goroutine holding one answer per request.
func TestIdempotencyLaterBounded(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	a := leasedNode(t, eps, "a", 30)
	b, _ := testNode(t, eps, "b")
	ia, ib := a.Idempotency(), b.Idempotency()
	ia.lateMaxBytes = 1500 // room for one answer of ~1 KB
	now := time.Now().UTC()
	ttl := store.IdempotencyTTL
	keys := []string{"k1", "k2", "k3"}
	for _, k := range keys {
		if rec, err := ia.BeginIdempotent("key_1", k, []byte("h"), "pa", now, ttl); rec != nil || err != nil {
			t.Fatalf("claim %s: %+v %v", k, rec, err)
		}
	}
	etcd.StopAll()
	body := make([]byte, 600)
	for _, k := range keys {
		if err := ia.FinishIdempotent("key_1", k, "pa", 200, nil, body); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("finish %s with etcd down: %v", k, err)
		}
	}
	ia.lateMu.Lock()
	held, queued := ia.lateBytes, len(ia.late)
	ia.lateMu.Unlock()
	if held > 1500 || queued != 3 {
		t.Fatalf("%d answer bytes held for %d ends during the outage", held, queued)
	}
	etcd.StartAll()
	waitFor(t, "the queue done after etcd returned", 20*time.Second, func() bool {
		ia.lateMu.Lock()
		defer ia.lateMu.Unlock()
		return len(ia.late) == 0
	})
	// b lost its membership lease in the outage too: until it has one
	// again its claims answer unavailable (and claim nothing).
	var rec *store.IdempotencyRecord
	var err error
	waitFor(t, "b a member again", 20*time.Second, func() bool {
		rec, err = ib.BeginIdempotent("key_1", "k1", []byte("h"), "pb", now, ttl)
		return !errors.Is(err, store.ErrUnavailable)
	})
	if err != nil || rec == nil || rec.State != store.IdemDone {
		t.Fatalf("k1, within the cap: %+v %v (want its answer)", rec, err)
	}
	for _, k := range keys[1:] {
		if rec, err := ib.BeginIdempotent("key_1", k, []byte("h"), "pb", now, ttl); err != nil || rec != nil {
			t.Fatalf("%s, past the cap: %+v %v (want it dropped: a fresh claim)", k, rec, err)
		}
	}
	// Past the count cap an end is not queued at all.
	ia.lateMaxEnds = 0
	if rec, err := ia.BeginIdempotent("key_1", "k4", []byte("h"), "pa", now, ttl); rec != nil || err != nil {
		t.Fatalf("claim k4: %+v %v", rec, err)
	}
	etcd.StopAll()
	ia.FinishIdempotent("key_1", "k4", "pa", 200, nil, body)
	ia.lateMu.Lock()
	queued = len(ia.late)
	ia.lateMu.Unlock()
	etcd.StartAll()
	if queued != 0 {
		t.Fatalf("%d ends queued past the count cap", queued)
	}
}

// TestIdempotencyLostClaimForgotten: a claim whose transaction errored
// may have been committed with its answer lost; the node deletes it in
// the background, only while it is still the value it wrote, so that a
// retry reaching another node is not 409 for the membership lease's
// life. A claim taken over since is left alone.
func TestIdempotencyLostClaimForgotten(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a, _ := testNode(t, etcd.Endpoints(), "a")
	b, _ := testNode(t, etcd.Endpoints(), "b")
	ia, ib := a.Idempotency(), b.Idempotency()
	now := time.Now().UTC()
	ttl := store.IdempotencyTTL
	ctx := context.Background()
	lease, err := a.liveMemberLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What the committed claims wrote, as BeginIdempotent writes them.
	vals := map[string]string{}
	for _, k := range []string{"lost", "taken"} {
		v, _ := json.Marshal(store.IdempotencyRecord{Key: k, CredentialID: "key_1", RequestHash: []byte("h"),
			State: store.IdemInFlight, Owner: "pa", CreatedAt: now})
		vals[k] = string(v)
		if _, err := a.cli.Put(ctx, ia.key("key_1", k), string(v), clientv3.WithLease(lease)); err != nil {
			t.Fatal(err)
		}
	}
	// "taken" was taken over by another request before the delete ran.
	other, _ := json.Marshal(store.IdempotencyRecord{Key: "taken", CredentialID: "key_1", RequestHash: []byte("h"),
		State: store.IdemInFlight, Owner: "pa", CreatedAt: now.Add(time.Nanosecond)})
	if _, err := a.cli.Put(ctx, ia.key("key_1", "taken"), string(other), clientv3.WithLease(lease)); err != nil {
		t.Fatal(err)
	}
	ia.forgetLostClaim(ia.key("key_1", "lost"), vals["lost"])
	ia.forgetLostClaim(ia.key("key_1", "taken"), vals["taken"])
	waitFor(t, "the lost claim forgotten", 10*time.Second, func() bool {
		rec, err := ib.BeginIdempotent("key_1", "lost", []byte("h"), "pb", now, ttl)
		return err == nil && rec == nil
	})
	waitFor(t, "the queue done", 10*time.Second, func() bool {
		ia.lateMu.Lock()
		defer ia.lateMu.Unlock()
		return len(ia.late) == 0
	})
	g, err := a.cli.Get(ctx, ia.key("key_1", "taken"))
	if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != string(other) {
		t.Fatalf("a claim taken over since was touched: %v %v", g.Kvs, err)
	}
}
