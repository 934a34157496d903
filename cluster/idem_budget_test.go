package cluster

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/store"
)

// TestIdempotencyTeamBudget (hostile tenant): one team's records kept in
// etcd are bounded per 24 h, the budget split between the live nodes;
// past its share a node refuses the team's keyed requests (with when to
// retry) while other teams go on, and room comes back as hours leave the
// window.
func TestIdempotencyTeamBudget(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(Config{Endpoints: eps, Prefix: "/t/", NodeID: "a", Version: "test", StartedAt: time.Now(),
		OpTimeout: time.Second, LeaseTTL: 10, IdemTeamBytes: 8192})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Attach(st); err != nil {
		t.Fatal(err)
	}
	a.Register()
	t.Cleanup(func() { a.Close(); st.Close() })
	testNode(t, eps, "b") // two live nodes: a's share is 4096 bytes
	waitFor(t, "both nodes registered", 10*time.Second, func() bool {
		m, err := a.Members(t.Context())
		return err == nil && len(m) == 2
	})

	ix := a.Idempotency()
	now := time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)
	if ok, total, _ := ix.AdmitIdempotent("team_1", now); !ok || total != 8192 {
		t.Fatalf("a fresh team: %v %d", ok, total)
	}
	ix.ChargeIdempotent("team_1", now, 3000)
	if ok, _, _ := ix.AdmitIdempotent("team_1", now); !ok {
		t.Fatal("refused within its share")
	}
	ix.ChargeIdempotent("team_1", now.Add(time.Hour), 1000) // 4256 bytes counted, past 4096
	ok, _, retry := ix.AdmitIdempotent("team_1", now.Add(time.Hour))
	if ok || retry <= 22*time.Hour || retry > 23*time.Hour {
		t.Fatalf("past its share: admitted=%v retry=%v (want refused, until 11:00 tomorrow)", ok, retry)
	}
	if ok, _, _ := ix.AdmitIdempotent("team_2", now.Add(time.Hour)); !ok {
		t.Fatal("another team refused")
	}
	if ok, _, _ := ix.AdmitIdempotent("", now.Add(time.Hour)); !ok {
		t.Fatal("the operator refused")
	}
	// The first hour leaves the 24 h window: its 3000 bytes are free again.
	if ok, _, _ := ix.AdmitIdempotent("team_1", now.Add(24*time.Hour)); !ok {
		t.Fatal("still refused once the first hour left the window")
	}
}
