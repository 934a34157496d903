package dashboard

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// TestSessionsOneTeamCannotEvictOthers: signing in succeeds as often as
// a valid key is presented, and the session table is shared by every
// team and the operator. A hostile team signing in over and over must
// only push out its own older sessions, never another team's or the
// operator's.
func TestSessionsOneTeamCannotEvictOthers(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { at = at.Add(time.Millisecond); return at }
	ss := newSessions(time.Hour, now)
	victim := ss.create("smx_root_victim", &store.APIKey{ID: "key_v", TeamID: "team_victim"}, false)
	op := ss.create("operator-token", nil, true)
	attacker := &store.APIKey{ID: "key_a", TeamID: "team_attacker"}
	for range maxSessions + 10 {
		ss.create("smx_root_attacker", attacker, false)
	}
	if ss.get(victim.id) == nil {
		t.Fatal("another team's sign-ins evicted the victim team's session")
	}
	if ss.get(op.id) == nil {
		t.Fatal("a team's sign-ins evicted the operator's session")
	}
	ss.mu.Lock()
	n := len(ss.m)
	ss.mu.Unlock()
	if n > maxSessionsPerOwner+2 {
		t.Fatalf("%d sessions held after one team signed in %d times; want at most %d", n, maxSessions+10, maxSessionsPerOwner+2)
	}
}
