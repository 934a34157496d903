package routing

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
)

// TestStoredRoundTrip checks that an attempt's stored form (set by
// reference, decision with the attempt) expands, after a JSON round trip,
// to exactly the explanation Pick gives, whatever the candidates' states.
func TestStoredRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	statuses := []state.Provider{state.ProviderActive, state.ProviderActive, state.ProviderActive, state.ProviderInactive, state.ProviderError}
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for round := range 500 {
		n := 1 + r.IntN(40)
		cands := make([]Candidate, n)
		for i := range cands {
			c := Candidate{ID: fmt.Sprintf("dprov_%03d", r.IntN(1000)), GroupID: fmt.Sprint("g", r.IntN(3)),
				Status: statuses[r.IntN(len(statuses))], Pulled: r.IntN(8) == 0, OverQuota: r.IntN(8) == 0,
				AuthFailed: r.IntN(20) == 0, Avoid: r.IntN(20) == 0, NotBefore: base.Add(time.Duration(r.IntN(100)) * time.Second)}
			if r.IntN(3) > 0 {
				w := r.IntN(120) - 5
				c.Weight = &w
			}
			cands[i] = c
		}
		scope := []Scope{{Type: "all"}, {Type: "group", GroupIDs: []string{"g1"}}, {Type: "providers", ProviderIDs: []string{cands[0].ID}}}[round%3]
		seed := r.Uint64()
		want := Pick(scope, cands, rand.New(rand.NewPCG(seed, 1)).IntN)

		sorted := SortInScope(scope, cands)
		d := Choose(sorted, rand.New(rand.NewPCG(seed, 1)).IntN)
		if d.Picked != "" && sorted[d.Index].ID != d.Picked {
			t.Fatalf("round %d: index %d is %s, picked %s", round, d.Index, sorted[d.Index].ID, d.Picked)
		}
		setJSON, _ := json.Marshal(SetOf(sorted))
		storedJSON, _ := json.Marshal(Stored{ScopeType: scope.Type, Set: "ref", Decision: d})
		var set []Weighted
		var st Stored
		if err := json.Unmarshal(setJSON, &set); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(storedJSON, &st); err != nil {
			t.Fatal(err)
		}
		got := Expand(st.ScopeType, set, st.Decision)
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if string(wj) != string(gj) {
			t.Fatalf("round %d:\nwant %s\ngot  %s", round, wj, gj)
		}
		if !reflect.DeepEqual(want.Picked, got.Picked) {
			t.Fatalf("round %d: picked %q, want %q", round, got.Picked, want.Picked)
		}
	}
}

// TestChooseAllocatesOnlyForExclusions: a decision over many eligible
// providers allocates nothing.
func TestChooseAllocatesOnlyForExclusions(t *testing.T) {
	cands := make([]Candidate, 200)
	for i := range cands {
		cands[i] = Candidate{ID: fmt.Sprintf("dprov_%04d", i), Status: state.ProviderActive}
	}
	r := rand.New(rand.NewPCG(1, 1))
	if n := testing.AllocsPerRun(100, func() { Choose(cands, r.IntN) }); n != 0 {
		t.Fatalf("Choose allocated %v times per run", n)
	}
}
