package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smtpmux/smtpmux/internal/etcdtest"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/store"
)

// TestOAuthStatesOnEtcd: a connect flow issued on one node is consumed on
// another, once in the whole cluster however many callbacks race, not
// after its TTL, within the per-team bound, and on a lease that ends it.
func TestOAuthStatesOnEtcd(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	a, _ := testNode(t, eps, "a")
	b, _ := testNode(t, eps, "b")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	sa, sb := NewOAuthStates(a, testSealer(t), 0, now), NewOAuthStates(b, testSealer(t), 0, now)

	st, err := sa.Issue("team_o", oauth.KindGoogle)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sb.Consume(st.Value)
	if err != nil || got.Value != st.Value || got.TeamID != "team_o" || got.Kind != oauth.KindGoogle ||
		got.Verifier != st.Verifier || !got.Expires.Equal(st.Expires) {
		t.Fatalf("consumed on b: %+v %v, issued %+v", got, err, st)
	}
	for _, s := range []*OAuthStates{sa, sb} {
		if _, err := s.Consume(st.Value); !errors.Is(err, oauth.ErrStateInvalid) {
			t.Fatalf("a used state again: %v", err)
		}
	}

	// Callbacks racing on one state, on both nodes: one wins.
	st, _ = sa.Issue("team_o", oauth.KindMicrosoft)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sa
			if i%2 == 1 {
				s = sb
			}
			if _, err := s.Consume(st.Value); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, oauth.ErrStateInvalid) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d callbacks consumed one state", wins.Load())
	}

	// The flow's key is on a lease that ends it (a minute's bucket at
	// most past its ten minutes).
	st, _ = sa.Issue("team_o", oauth.KindGoogle)
	kv, err := a.cli.Get(context.Background(), "/t/oauth/states/"+st.Value)
	if err != nil || len(kv.Kvs) != 1 || kv.Kvs[0].Lease == 0 {
		t.Fatalf("state key: %v %v", kv, err)
	}
	ttl, err := a.cli.TimeToLive(context.Background(), clientv3.LeaseID(kv.Kvs[0].Lease))
	if left := time.Duration(ttl.TTL) * time.Second; err != nil || left < oauth.StateTTL-time.Minute || left > oauth.StateTTL+2*time.Minute {
		t.Fatalf("state lease: %v left, %v", left, err)
	}
	// Past its TTL it is refused, though etcd still holds it.
	clock.Add(int64(oauth.StateTTL))
	if _, err := sb.Consume(st.Value); !errors.Is(err, oauth.ErrStateInvalid) {
		t.Fatalf("an expired state: %v", err)
	}

	// A team's pending flows are bounded: its oldest makes room.
	var first oauth.State
	for i := range oauth.MaxStatesPerTeam + 1 {
		clock.Add(int64(time.Millisecond))
		s, err := sa.Issue("team_p", oauth.KindGoogle)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = s
		}
	}
	if _, err := sb.Consume(first.Value); !errors.Is(err, oauth.ErrStateInvalid) {
		t.Fatalf("the team's oldest flow past its bound: %v", err)
	}
	if n, _ := a.cli.Get(context.Background(), "/t/oauth/teams/team_p/", clientv3.WithPrefix(), clientv3.WithCountOnly()); n.Count != oauth.MaxStatesPerTeam {
		t.Fatalf("team index holds %d flows, want %d", n.Count, oauth.MaxStatesPerTeam)
	}
}

// TestOAuthStatesTeamBoundUnderRace: a hostile team starting flows many at
// once (on several nodes) may overshoot its MaxStatesPerTeam for a moment,
// but its next flow trims it back: the overshoot must not pile up until
// the team holds the cluster's whole MaxStates and locks every other team
// out of connecting accounts.
func TestOAuthStatesTeamBoundUnderRace(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	eps := etcd.Endpoints()
	a, _ := testNode(t, eps, "a")
	b, _ := testNode(t, eps, "b")
	sa, sb := NewOAuthStates(a, testSealer(t), 0, nil), NewOAuthStates(b, testSealer(t), 0, nil)
	count := func() int64 {
		n, err := a.cli.Get(context.Background(), "/t/oauth/states/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return n.Count
	}
	// Rounds of concurrent starts: each round every request reads the
	// same live set and (before the fix) all evicted the same oldest.
	for range 3 {
		var wg sync.WaitGroup
		for i := range 3 * oauth.MaxStatesPerTeam {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := sa
				if i%2 == 1 {
					s = sb
				}
				if _, err := s.Issue("team_x", oauth.KindGoogle); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	// One more start, alone: the team is back within its bound.
	if _, err := sa.Issue("team_x", oauth.KindGoogle); err != nil {
		t.Fatal(err)
	}
	if n := count(); n > oauth.MaxStatesPerTeam {
		t.Fatalf("after a lone start the team holds %d flows, bound %d", n, oauth.MaxStatesPerTeam)
	}
	if n, _ := a.cli.Get(context.Background(), "/t/oauth/teams/team_x/", clientv3.WithPrefix(), clientv3.WithCountOnly()); n.Count > oauth.MaxStatesPerTeam {
		t.Fatalf("team index holds %d flows, bound %d", n.Count, oauth.MaxStatesPerTeam)
	}
}

// testSealer is the secret_key every test node shares.
func testSealer(t *testing.T) *store.Sealer {
	t.Helper()
	s, err := store.NewSealer("shared-secret-key-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOAuthStateVerifierSealedInEtcd: the PKCE verifier is a secret and
// must not sit in etcd in clear; another node (same secret_key) still
// completes the flow with it.
func TestOAuthStateVerifierSealedInEtcd(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	a, _ := testNode(t, etcd.Endpoints(), "a")
	b, _ := testNode(t, etcd.Endpoints(), "b")
	sa, sb := NewOAuthStates(a, testSealer(t), 0, nil), NewOAuthStates(b, testSealer(t), 0, nil)
	st, err := sa.Issue("team_s", oauth.KindGoogle)
	if err != nil || st.Verifier == "" {
		t.Fatalf("issue: %+v %v", st, err)
	}
	kv, err := a.cli.Get(context.Background(), "/t/oauth/states/"+st.Value)
	if err != nil || len(kv.Kvs) != 1 {
		t.Fatalf("stored flow: %v %v", kv, err)
	}
	if strings.Contains(string(kv.Kvs[0].Value), st.Verifier) {
		t.Fatalf("the PKCE verifier is in etcd in clear: %s", kv.Kvs[0].Value)
	}
	if got, err := sb.Consume(st.Value); err != nil || got.Verifier != st.Verifier {
		t.Fatalf("consumed on b: %+v %v", got, err)
	}
}
