package main

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/cluster"
	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/store"
)

// TestClusterFirstStart starts three cluster nodes' bootstrap at the same
// time on an empty key prefix of a real etcd, through the code start()
// runs (firstTeam, then firstRootKey once every node is past it, as when
// nodes bind their listeners together): one default team, one managed
// account and one root key in the whole cluster, and only the node that
// created a generated key prints it. With bootstrap_root_key set alike on
// every node, no node fails on the second copy of its hash.
func TestClusterFirstStart(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	sealer, err := store.NewSealer("first-start-secret-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	configured := "smx_root_" + strings.Repeat("k", 40)
	for _, tc := range []struct{ prefix, rootKey string }{{"/gen/", ""}, {"/cfg/", configured}} {
		t.Run(strings.Trim(tc.prefix, "/"), func(t *testing.T) {
			const nodes = 3
			ds := make([]*daemon, nodes)
			for i := range ds {
				st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				n, err := cluster.Open(cluster.Config{Endpoints: etcd.Endpoints(), Prefix: tc.prefix,
					NodeID: string(rune('a' + i)), Version: "test", StartedAt: time.Now(), Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { n.Close(); st.Close() })
				if err := n.Join(st, sealer); err != nil {
					t.Fatal(err)
				}
				ds[i] = &daemon{cfg: &config{bootstrapRootKey: tc.rootKey}, store: st, node: n}
			}
			teams := make([]*store.Team, nodes)
			outs := make([]bytes.Buffer, nodes)
			errs := make([]error, nodes)
			// Each phase starts every node at once (a closed channel),
			// and the root keys start only when every team step is done.
			for phase := 0; phase < 2; phase++ {
				var wg sync.WaitGroup
				gate := make(chan struct{})
				for i, d := range ds {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-gate
						if phase == 0 {
							teams[i], errs[i] = d.firstTeam()
						} else {
							errs[i] = d.firstRootKey(teams[i], &outs[i])
						}
					}()
				}
				close(gate)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("phase %d, node %d: %v", phase, i, err)
					}
				}
			}
			printed := 0
			for i := range ds {
				if teams[i].ID != teams[0].ID {
					t.Fatalf("node %d bootstrapped team %s, node 0 %s", i, teams[i].ID, teams[0].ID)
				}
				if strings.Contains(outs[i].String(), "smx_root_") {
					printed++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.rootKey == ""]; printed != want {
				t.Fatalf("%d nodes printed a root key; want %d", printed, want)
			}
			// Every node's view, caught up with etcd, holds one of each.
			for i, d := range ds {
				if _, err := d.node.Begin(); err != nil {
					t.Fatal(err)
				}
				all, err := d.store.Teams()
				if err != nil || len(all) != 1 {
					t.Fatalf("node %d: %d teams (%v); want 1", i, len(all), err)
				}
				ps, _ := d.store.Providers(teams[0].ID)
				if len(ps) != 1 || !ps[0].Managed {
					t.Fatalf("node %d: providers %v; want one managed account", i, ps)
				}
				keys, _ := d.store.Keys(teams[0].ID)
				if len(keys) != 1 || keys[0].Type != store.KeyRoot {
					t.Fatalf("node %d: %d keys; want one root key", i, len(keys))
				}
				for j := range outs {
					if s := outs[j].String(); strings.Contains(s, "smx_root_") &&
						!bytes.Equal(store.HashSecret(strings.Fields(s)[len(strings.Fields(s))-1]), keys[0].Hash) {
						t.Fatalf("node %d printed a key that is not the stored root key", j)
					}
				}
			}
		})
	}
}
