package sendapi

import "testing"

// TestSendBudgetTeamShare: while one of its sends is in flight, a team's
// sends together hold at most half the bound, so one tenant cannot take
// the whole budget; another team still gets the rest, and a team's lone
// send may pass half (the size limit, not the share, bounds one send).
func TestSendBudgetTeamShare(t *testing.T) {
	b := &sendBudget{limit: 1000}
	if !b.take("team_a", 600, 0) {
		t.Fatal("a lone send of 600 of 1000 refused")
	}
	if b.take("team_a", 100, 0) {
		t.Fatal("team_a's second send taken past half the bound")
	}
	if !b.take("team_a", 50, 600) {
		t.Fatal("team_a's first send could not grow within the bound")
	}
	if !b.take("team_b", 300, 0) {
		t.Fatal("team_b's send refused with 350 of 1000 free")
	}
	b.give("team_a", 650)
	if !b.take("team_a", 200, 0) || b.take("team_a", 400, 0) {
		t.Fatalf("after the give back: %d in flight", b.inFlight())
	}
	b.give("team_a", 200)
	b.give("team_b", 300)
	if n := b.inFlight(); n != 0 || len(b.teams) != 0 {
		t.Fatalf("%d bytes, %d teams still held", n, len(b.teams))
	}
}
