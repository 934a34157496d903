package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func newLimitReq(team, typ string) *LimitRequest {
	return &LimitRequest{ID: NewID(PrefixLimitRequest), TeamID: team, Type: typ, Usage: 8, CurrentLimit: 10,
		RequestedAt: time.Now().UTC()}
}

func TestLimitRequestOnePendingPerTeamAndType(t *testing.T) {
	s, _ := openTest(t)
	for _, team := range []string{"team_a", "team_b"} {
		if err := s.PutTeam(&Team{ID: team, Name: team}); err != nil {
			t.Fatal(err)
		}
	}
	a := newLimitReq("team_a", LimitManagedSES)
	if err := s.CreateLimitRequest(a); err != nil || a.Status != LimitPending {
		t.Fatalf("create: %v %+v", err, a)
	}
	if err := s.CreateLimitRequest(newLimitReq("team_a", LimitManagedSES)); !errors.Is(err, ErrConflict) {
		t.Fatalf("second pending of a type: %v", err)
	}
	// Another type, another team: independent.
	acc := newLimitReq("team_a", LimitSendingAccounts)
	if err := s.CreateLimitRequest(acc); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateLimitRequest(newLimitReq("team_b", LimitManagedSES)); err != nil {
		t.Fatal(err)
	}
	got, err := s.PendingLimitRequest("team_a", LimitManagedSES)
	if err != nil || got.ID != a.ID {
		t.Fatalf("pending: %+v %v", got, err)
	}

	// Resolving frees the slot; the record keeps its history.
	now := time.Now().UTC()
	r, team, err := s.ResolveLimitRequest("team_a", a.ID, func(r *LimitRequest, tm *Team) error {
		n := 100
		r.Status, r.DecidedLimit, r.DecidedAt = LimitApproved, &n, &now
		tm.ManagedDailyLimit = &n
		r.TeamID, r.Type = "team_b", LimitSendingAccounts // identity is ignored
		return nil
	})
	if err != nil || r.Status != LimitApproved || r.TeamID != "team_a" || r.Type != LimitManagedSES || *team.ManagedDailyLimit != 100 {
		t.Fatalf("resolve: %+v %+v %v", r, team, err)
	}
	if tm, _ := s.Team("team_a"); tm.ManagedDailyLimit == nil || *tm.ManagedDailyLimit != 100 {
		t.Fatalf("team limit not stored: %+v", tm)
	}
	if _, err := s.PendingLimitRequest("team_a", LimitManagedSES); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pending after resolve: %v", err)
	}
	if _, err := s.PendingLimitRequest("team_a", LimitSendingAccounts); err != nil {
		t.Fatalf("the other type's pending request is untouched: %v", err)
	}
	if err := s.CreateLimitRequest(newLimitReq("team_a", LimitManagedSES)); err != nil {
		t.Fatalf("new request after resolve: %v", err)
	}

	// Final states do not change; other teams' requests are not found;
	// an error of fn writes nothing.
	if _, _, err := s.ResolveLimitRequest("", a.ID, func(r *LimitRequest, _ *Team) error { r.Status = LimitDenied; return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("resolve twice: %v", err)
	}
	if _, _, err := s.ResolveLimitRequest("team_b", acc.ID, func(r *LimitRequest, _ *Team) error { r.Status = LimitDenied; return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other team: %v", err)
	}
	boom := errors.New("boom")
	if _, _, err := s.ResolveLimitRequest("", acc.ID, func(r *LimitRequest, tm *Team) error {
		n := 1
		tm.ProviderLimit, r.Status = &n, LimitApproved
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	if _, _, err := s.ResolveLimitRequest("", acc.ID, func(*LimitRequest, *Team) error { return nil }); !errors.Is(err, ErrConflict) {
		t.Fatalf("fn leaving it pending: %v", err)
	}
	if r, _ := s.LimitRequest(acc.ID); r.Status != LimitPending {
		t.Fatalf("written despite the error: %+v", r)
	}
	if tm, _ := s.Team("team_a"); tm.ProviderLimit != nil {
		t.Fatalf("team written despite the error: %+v", tm)
	}
	if _, _, err := s.ResolveLimitRequest("", "lreq_missing", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestLimitRequestsListNewestFirst(t *testing.T) {
	s, _ := openTest(t)
	var a []string // team_a's, oldest first
	for i := 0; i < 5; i++ {
		typ := LimitManagedSES
		if i%2 == 1 {
			typ = LimitSendingAccounts
		}
		r := newLimitReq("team_a", typ)
		// Store resolved ones directly: only one may be pending.
		if err := s.update(func(tx *bolt.Tx) error { r.Status = LimitDenied; return putLimitRequest(tx, r) }); err != nil {
			t.Fatal(err)
		}
		a = append(a, r.ID)
		if err := s.CreateLimitRequest(newLimitReqFor(t, s, "team_b")); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(rs []*LimitRequest) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	rs, more, err := s.LimitRequests(LimitRequestFilter{TeamID: "team_a"}, "", 2)
	if err != nil || !more || len(rs) != 2 || rs[0].ID != a[4] || rs[1].ID != a[3] {
		t.Fatalf("page 1: %v %v %v", ids(rs), more, err)
	}
	rs, more, err = s.LimitRequests(LimitRequestFilter{TeamID: "team_a"}, a[3], 2)
	if err != nil || !more || len(rs) != 2 || rs[0].ID != a[2] || rs[1].ID != a[1] {
		t.Fatalf("page 2: %v %v %v", ids(rs), more, err)
	}
	rs, more, err = s.LimitRequests(LimitRequestFilter{TeamID: "team_a"}, a[1], 2)
	if err != nil || more || len(rs) != 1 || rs[0].ID != a[0] {
		t.Fatalf("page 3: %v %v %v", ids(rs), more, err)
	}
	rs, _, _ = s.LimitRequests(LimitRequestFilter{TeamID: "team_a", Type: LimitSendingAccounts}, "", 10)
	if len(rs) != 2 || rs[0].ID != a[3] || rs[1].ID != a[1] {
		t.Fatalf("by type: %v", ids(rs))
	}
	rs, _, _ = s.LimitRequests(LimitRequestFilter{}, "", 100)
	if len(rs) != 10 {
		t.Fatalf("all: %v", ids(rs))
	}
	for i := 1; i < len(rs); i++ {
		if rs[i-1].ID <= rs[i].ID {
			t.Fatalf("not newest first: %v", ids(rs))
		}
	}
	rs, more, _ = s.LimitRequests(LimitRequestFilter{Status: LimitPending}, "", 100)
	if len(rs) != 1 || more || rs[0].TeamID != "team_b" {
		t.Fatalf("pending: %v", ids(rs))
	}
	rs, _, _ = s.LimitRequests(LimitRequestFilter{}, a[2], 100)
	for _, r := range rs {
		if r.ID >= a[2] {
			t.Fatalf("cursor not honoured: %v", ids(rs))
		}
	}
	if rs, _, _ := s.LimitRequests(LimitRequestFilter{TeamID: "team_c"}, "", 10); len(rs) != 0 {
		t.Fatalf("unknown team: %v", ids(rs))
	}
}

// newLimitReqFor resolves the team's pending shared request, if any, and
// returns a new one, so a test can create many.
func newLimitReqFor(t *testing.T, s *Store, team string) *LimitRequest {
	t.Helper()
	if p, err := s.PendingLimitRequest(team, LimitManagedSES); err == nil {
		if err := s.PutTeam(&Team{ID: team, Name: team}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ResolveLimitRequest(team, p.ID, func(r *LimitRequest, _ *Team) error { r.Status = LimitCancelled; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return newLimitReq(team, LimitManagedSES)
}

func TestLimitRequestConcurrentCreate(t *testing.T) {
	s, _ := openTest(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	okN := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.CreateLimitRequest(newLimitReq("team_a", LimitSendingAccounts))
			if err == nil {
				mu.Lock()
				okN++
				mu.Unlock()
			} else if !errors.Is(err, ErrConflict) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if okN != 1 {
		t.Fatalf("%d concurrent requests were accepted, want 1", okN)
	}
}

// TestLimitRequestLegacyIDs: requests filed with the old lreq_ prefix
// stay valid IDs and are listed, after the trir_ ones (they are older),
// in both the team's and the operator's walk.
func TestLimitRequestLegacyIDs(t *testing.T) {
	s, _ := openTest(t)
	if err := s.PutTeam(&Team{ID: "team_a", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	old := newLimitReq("team_a", LimitManagedSES)
	old.ID = NewID(prefixLimitRequestLegacy)
	if err := s.CreateLimitRequest(old); err != nil {
		t.Fatal(err)
	}
	cur := newLimitReq("team_a", LimitSendingAccounts)
	if err := s.CreateLimitRequest(cur); err != nil {
		t.Fatal(err)
	}
	if !ValidLimitRequestID(old.ID) || !ValidLimitRequestID(cur.ID) || ValidLimitRequestID("key_"+cur.ID[5:]) {
		t.Fatalf("ValidLimitRequestID(%s, %s)", old.ID, cur.ID)
	}
	for _, f := range []LimitRequestFilter{{TeamID: "team_a"}, {}} {
		got, more, err := s.LimitRequests(f, "", 10)
		if err != nil || more || len(got) != 2 || got[0].ID != cur.ID || got[1].ID != old.ID {
			t.Fatalf("filter %+v: %v %v %v", f, got, more, err)
		}
		page, _, err := s.LimitRequests(f, cur.ID, 10)
		if err != nil || len(page) != 1 || page[0].ID != old.ID {
			t.Fatalf("filter %+v after %s: %v %v", f, cur.ID, page, err)
		}
	}
}
