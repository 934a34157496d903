package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/store"
)

// TestDeleteLargeGroup deletes a group of 150 providers (more keys than
// etcd takes in one transaction at its default --max-txn-ops 128; the
// account limit is 200 per team) on a real etcd: the deletion succeeds,
// every member is moved out on both nodes, and no write was larger than
// etcd accepts. A stale If-Match still loses, before anything moved.
func TestDeleteLargeGroup(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	a, sa := testNode(t, eps, "a")
	_, sb := testNode(t, eps, "b")
	now := time.Now().UTC()
	const team, members = "team_g", 150

	g := &store.DeliveryGroup{ID: store.NewID(store.PrefixGroup), TeamID: team, Name: "big", CreatedAt: now, UpdatedAt: now}
	if err := sa.CreateGroup(g); err != nil {
		t.Fatal(err)
	}
	for i := range members + 3 { // three providers outside the group stay as they are
		p := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: team, Name: fmt.Sprint("p", i), Type: store.TypeSMTP, CreatedAt: now}
		if i < members {
			p.GroupID = g.ID
		}
		if err := sa.CreateProvider(p); err != nil {
			t.Fatal(err)
		}
	}
	grouped := func(st *store.Store) int {
		ps, err := st.Providers(team)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range ps {
			if p.GroupID == g.ID {
				n++
			}
		}
		return n
	}
	waitFor(t, "the group's members on b", 10*time.Second, func() bool { return grouped(sb) == members })

	before := a.EtcdWrites()
	if _, err := sa.DeleteGroup(team, g.ID, g.Version+1, now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if n := grouped(sa); n != members || a.EtcdWrites() != before {
		t.Fatalf("a refused deletion moved %d providers, made %d writes", members-n, a.EtcdWrites()-before)
	}

	res, err := sa.DeleteGroup(team, g.ID, g.Version, now)
	if err != nil {
		t.Fatalf("deleting a group of %d providers: %v", members, err)
	}
	if len(res.MovedProviders) != members {
		t.Fatalf("moved %d providers, want %d", len(res.MovedProviders), members)
	}
	if w := a.EtcdWrites() - before; w != 2 {
		t.Fatalf("the deletion took %d etcd writes, want 2", w)
	}
	for name, st := range map[string]*store.Store{"a": sa, "b": sb} {
		waitFor(t, "the deletion on "+name, 10*time.Second, func() bool {
			_, err := st.Group(team, g.ID)
			return errors.Is(err, store.ErrNotFound) && grouped(st) == 0
		})
		if ps, _ := st.Providers(team); len(ps) != members+3 {
			t.Fatalf("%s: %d providers after the deletion", name, len(ps))
		}
	}
}
