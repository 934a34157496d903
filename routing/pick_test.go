package routing

import (
	"math/rand/v2"
	"testing"

	"github.com/smtpmux/smtpmux/internal/state"
)

func ip(n int) *int { return &n }

func TestPickEligibility(t *testing.T) {
	cands := []Candidate{
		{ID: "a", Status: "active"},
		{ID: "b", Status: "inactive"},
		{ID: "c", Status: "error"},
		{ID: "d", Status: "pending"},
		{ID: "e", Status: "active", Weight: ip(0)},
		{ID: "f", Status: "active", Pulled: true},
		{ID: "g", Status: "active", OverQuota: true},
		{ID: "h", Status: "active", AuthFailed: true},
		{ID: "i", Status: "active", GroupID: "g1"},
	}
	tests := []struct {
		name     string
		scope    Scope
		eligible []string
		excluded map[string]string
	}{
		{"all", Scope{Type: "all"}, []string{"a", "i"}, map[string]string{
			"b": ReasonInactive, "c": ReasonError, "d": ReasonPending, "e": ReasonZeroWeight,
			"f": ReasonPulled, "g": ReasonOverQuota, "h": ReasonAuthFailed}},
		{"providers", Scope{Type: "providers", ProviderIDs: []string{"a", "c"}}, []string{"a"}, map[string]string{"c": ReasonError}},
		{"group", Scope{Type: "group", GroupIDs: []string{"g1"}}, []string{"i"}, map[string]string{}},
		{"unknown group", Scope{Type: "group", GroupIDs: []string{"nope"}}, nil, map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex := Pick(tc.scope, cands, func(int) int { return 0 })
			var got []string
			for _, e := range ex.Eligible {
				got = append(got, e.ProviderID)
			}
			if len(got) != len(tc.eligible) {
				t.Fatalf("eligible = %v, want %v", got, tc.eligible)
			}
			for i := range got {
				if got[i] != tc.eligible[i] {
					t.Fatalf("eligible = %v, want %v", got, tc.eligible)
				}
			}
			if len(ex.Excluded) != len(tc.excluded) {
				t.Fatalf("excluded = %v, want %v", ex.Excluded, tc.excluded)
			}
			for _, e := range ex.Excluded {
				if tc.excluded[e.ProviderID] != e.Reason {
					t.Errorf("%s excluded for %q, want %q", e.ProviderID, e.Reason, tc.excluded[e.ProviderID])
				}
			}
			if len(tc.eligible) > 0 && ex.Picked != tc.eligible[0] {
				t.Errorf("picked %q with draw 0, want %q", ex.Picked, tc.eligible[0])
			}
			if len(tc.eligible) == 0 && ex.Picked != "" {
				t.Errorf("picked %q from nothing", ex.Picked)
			}
		})
	}
}

func TestPickWaitingOnlyWhenQuotaOrBreaker(t *testing.T) {
	ex := Pick(Scope{}, []Candidate{{ID: "a", Status: "active", OverQuota: true}, {ID: "b", Status: "inactive"}}, rand.IntN)
	if ex.Picked != "" || !ex.Waiting {
		t.Fatalf("over-quota only: picked %q waiting %v, want none and waiting", ex.Picked, ex.Waiting)
	}
	ex = Pick(Scope{}, []Candidate{{ID: "b", Status: "inactive"}}, rand.IntN)
	if ex.Waiting {
		t.Fatal("inactive only: waiting should be false")
	}
}

func TestPickWeights(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cands := []Candidate{{ID: "a", Status: "active", Weight: ip(70)}, {ID: "b", Status: "active", Weight: ip(30)}}
	counts := map[string]int{}
	const n = 20000
	for i := 0; i < n; i++ {
		counts[Pick(Scope{}, cands, r.IntN).Picked]++
	}
	if share := float64(counts["a"]) / n; share < 0.68 || share > 0.72 {
		t.Fatalf("a got %.3f of picks, want 0.70±0.02", share)
	}
	// All unset: equal split.
	cands = []Candidate{{ID: "a", Status: "active"}, {ID: "b", Status: "active"}}
	counts = map[string]int{}
	for i := 0; i < n; i++ {
		counts[Pick(Scope{}, cands, r.IntN).Picked]++
	}
	if share := float64(counts["a"]) / n; share < 0.48 || share > 0.52 {
		t.Fatalf("unset weights: a got %.3f, want 0.50±0.02", share)
	}
}

func TestHasActive(t *testing.T) {
	cands := []Candidate{{ID: "a", Status: "inactive"}, {ID: "b", Status: "active", Weight: ip(0)}, {ID: "c", Status: "active", OverQuota: true}}
	if !HasActive(Scope{}, cands) {
		t.Fatal("over-quota active provider counts as active")
	}
	if HasActive(Scope{Type: "providers", ProviderIDs: []string{"a", "b"}}, cands) {
		t.Fatal("inactive and zero-weight providers are not active")
	}
}

// FuzzPick checks that Pick never panics and never picks an ineligible
// provider, whatever the candidates, scope and draw.
func FuzzPick(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 3)
	f.Add([]byte{0, 0, 0}, -1)
	f.Add([]byte{255, 254, 9, 100, 17}, 1<<30)
	f.Fuzz(func(t *testing.T, data []byte, drawVal int) {
		statuses := append(state.ProviderStatuses(), state.ProviderActive)
		var cands []Candidate
		for i := 0; i+1 < len(data); i += 2 {
			a, b := data[i], data[i+1]
			c := Candidate{ID: string(rune('a' + i/2%26)), Status: statuses[int(a)%len(statuses)],
				Pulled: b&1 != 0, OverQuota: b&2 != 0, AuthFailed: b&4 != 0, GroupID: string(rune('x' + int(b>>3)%2))}
			if b&8 != 0 {
				w := int(int8(a))
				c.Weight = &w
			}
			cands = append(cands, c)
		}
		scopes := []Scope{{Type: "all"}, {Type: "providers", ProviderIDs: []string{"a", "c"}}, {Type: "group", GroupIDs: []string{"x"}}}
		for _, s := range scopes {
			ex := Pick(s, cands, func(int) int { return drawVal })
			if ex.Picked == "" {
				continue
			}
			ok := false
			for _, c := range cands {
				if c.ID == ex.Picked && InScope(s, c) && exclusionReason(c) == "" {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("picked ineligible %q in scope %+v from %+v", ex.Picked, s, cands)
			}
		}
	})
}
