package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/store"
)

// testNode opens a store on a temp dir and attaches it to etcd as node id.
func testNode(t *testing.T, eps []string, id string) (*Node, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Open(Config{Endpoints: eps, Prefix: "/t/", NodeID: id, Version: "test", StartedAt: time.Now(), OpTimeout: time.Second, LeaseTTL: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Attach(st); err != nil {
		t.Fatal(err)
	}
	n.Register()
	t.Cleanup(func() { n.Close(); st.Close() })
	return n, st
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecordsOnEtcd runs two views on a real 3-member etcd: a write on
// one is in the other's view, a stale If-Match loses across nodes, the
// canary refuses another secret_key, a hostile key in etcd cannot reach
// the spool, writes answer ErrUnavailable (and change nothing) while etcd
// is down, and the views converge once it is back.
func TestRecordsOnEtcd(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	eps := etcd.Endpoints()
	a, sa := testNode(t, eps, "a")
	b, sb := testNode(t, eps, "b")
	now := time.Now().UTC()

	p := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: "team_a", Name: "p", Type: store.TypeSMTP, CreatedAt: now}
	if err := sa.CreateProvider(p); err != nil {
		t.Fatal(err)
	}
	if got, err := sa.Provider(p.ID); err != nil || got.Version != 1 {
		t.Fatalf("read-your-write on a: %v %v", got, err)
	}
	waitFor(t, "provider on b", 5*time.Second, func() bool { _, err := sb.Provider(p.ID); return err == nil })
	if _, err := sb.UpdateProvider("team_a", p.ID, 1, func(p *store.Provider) error { p.Name = "b"; return nil }); err != nil {
		t.Fatal(err)
	}
	// a's view may not have applied b's write yet: Begin waits for it,
	// so the stale version loses at once.
	if _, err := sa.UpdateProvider("team_a", p.ID, 1, func(p *store.Provider) error { p.Name = "a"; return nil }); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale If-Match across nodes: %v", err)
	}
	if a.EtcdWrites() != 1 || b.EtcdWrites() != 1 {
		t.Fatalf("etcd write transactions: a %d, b %d; want 1 each", a.EtcdWrites(), b.EtcdWrites())
	}

	// The canary: the first key wins, another key is refused.
	s1, _ := store.NewSealer("first-secret-key-0123456789")
	s2, _ := store.NewSealer("other-secret-key-0123456789")
	if err := a.CheckCanary(s1); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckCanary(s1); err != nil {
		t.Fatalf("same key: %v", err)
	}
	if err := b.CheckCanary(s2); !errors.Is(err, ErrWrongSecretKey) {
		t.Fatalf("other key: %v", err)
	}

	// Hostile keys written straight into etcd: a bucket outside the state
	// of record and a key with a path trick are not applied.
	ctx := context.Background()
	if _, err := a.cli.Put(ctx, "/t/records/messages/eml_x", "{}"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.Put(ctx, "/t/records/../messages/eml_y", "{}"); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Message("eml_x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a key naming the spool reached it: %v", err)
	}

	members, err := a.Members(ctx)
	if err != nil || len(members) != 2 || members[0].NodeID != "a" || members[1].NodeID != "b" {
		t.Fatalf("members: %v %v", members, err)
	}
	waitFor(t, "a is a member", 5*time.Second, func() bool { return a.State() == "member" })

	etcd.StopAll()
	start := time.Now()
	err = sa.DeleteProvider("team_a", p.ID, 0)
	if !errors.Is(err, store.ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Fatalf("write with etcd down: %v after %v", err, time.Since(start))
	}
	if _, err := sa.Provider(p.ID); err != nil {
		t.Fatalf("a refused write changed the view: %v", err)
	}
	waitFor(t, "a degraded", 10*time.Second, func() bool { return a.State() == "degraded" })
	etcd.StartAll()
	var perr error
	waitFor(t, "a write after etcd returned", 20*time.Second, func() bool {
		perr = sa.DeleteProvider("team_a", p.ID, 0)
		return perr == nil || !errors.Is(perr, store.ErrUnavailable)
	})
	if perr != nil {
		t.Fatal(perr)
	}
	waitFor(t, "delete on b", 5*time.Second, func() bool { _, err := sb.Provider(p.ID); return errors.Is(err, store.ErrNotFound) })
	waitFor(t, "a member again", 10*time.Second, func() bool { return a.State() == "member" })
	if !strings.HasPrefix(a.Prefix(), "/t/") || a.ID() != "a" || a.Client() == nil {
		t.Fatal("seam accessors")
	}
}
