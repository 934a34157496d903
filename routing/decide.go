package routing

import (
	"cmp"
	"slices"
	"time"
)

// Decision is what one routing decision adds to its candidate set: which
// in-scope providers were filtered out and why, the draw and the pick.
// With the set (the in-scope providers and their weights, the same for
// every message of a scope until the team's providers change) it is the
// whole Explanation (Expand): an attempt stores the set once by reference
// and the decision with itself, so the record of an attempt does not grow
// with the number of providers in scope.
type Decision struct {
	Excluded []Exclusion `json:"excluded,omitempty"`
	Draw     int         `json:"draw"`
	Total    int         `json:"total_weight"`
	Picked   string      `json:"picked,omitempty"`
	Waiting  bool        `json:"waiting,omitempty"`
	RetryAt  time.Time   `json:"retry_at,omitzero"`
	// Index is Picked's position in the candidates decided over (-1 when
	// nothing was picked), so the caller needs no search.
	Index int `json:"-"`
}

// Stored is the form of an Explanation kept with an attempt: the scope
// type, a reference to the candidate set (whatever the caller stores it
// under) and the decision.
type Stored struct {
	ScopeType string `json:"scope_type"`
	Set       string `json:"set"`
	Decision
}

// weightOf is c's weight in the draw (unset counts as DefaultWeight).
func weightOf(c *Candidate) int {
	if c.Weight != nil {
		return *c.Weight
	}
	return DefaultWeight
}

// SetOf returns the candidate set of sorted: each provider with its weight.
func SetOf(sorted []Candidate) []Weighted {
	out := make([]Weighted, len(sorted))
	for i := range sorted {
		out[i] = Weighted{sorted[i].ID, weightOf(&sorted[i])}
	}
	return out
}

// SortInScope returns the candidates of cands in scope s, sorted by ID: the
// order Choose expects and the one a set is stored in.
func SortInScope(s Scope, cands []Candidate) []Candidate {
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		if InScope(s, c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Candidate) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Choose is the decision of Pick over candidates already in scope and
// sorted by ID (SortInScope). It allocates only for the exclusions, so a
// team's many providers cost a pass over a slice, not a sort, a copy and
// an explanation per message. Eligible providers are drawn by cumulative
// weight in ID order, exactly as Pick draws them.
func Choose(sorted []Candidate, draw func(n int) int) Decision {
	d := Decision{Index: -1}
	for i := range sorted {
		c := &sorted[i]
		if r := exclusionReason(*c); r != "" {
			d.Excluded = append(d.Excluded, Exclusion{c.ID, r})
			if r == ReasonPulled || r == ReasonOverQuota {
				d.Waiting = true
				if d.RetryAt.IsZero() || c.NotBefore.Before(d.RetryAt) {
					d.RetryAt = c.NotBefore
				}
			}
			continue
		}
		d.Total += weightOf(c)
	}
	if d.Total == 0 {
		return d
	}
	d.Waiting, d.RetryAt = false, time.Time{}
	d.Draw = draw(d.Total)
	if d.Draw < 0 || d.Draw >= d.Total {
		d.Draw = 0 // a broken draw function must not pick outside the set
	}
	// Excluded candidates are skipped again rather than remembered: the
	// second pass stops at the pick, and remembering would allocate.
	acc := 0
	for i := range sorted {
		c := &sorted[i]
		if exclusionReason(*c) != "" {
			continue
		}
		acc += weightOf(c)
		if d.Draw < acc {
			d.Picked, d.Index = c.ID, i
			break
		}
	}
	return d
}

// Expand rebuilds the Explanation of decision d over candidate set set
// (SetOf of the candidates d was decided over). A provider of the set is
// eligible unless d excluded it.
func Expand(scopeType string, set []Weighted, d Decision) Explanation {
	ex := Explanation{ScopeType: scopeType, Excluded: d.Excluded, Draw: d.Draw, Total: d.Total,
		Picked: d.Picked, Waiting: d.Waiting, RetryAt: d.RetryAt}
	if ex.ScopeType == "" {
		ex.ScopeType = "all"
	}
	excluded := make(map[string]bool, len(d.Excluded))
	for _, e := range d.Excluded {
		excluded[e.ProviderID] = true
	}
	for _, w := range set {
		ex.InScope = append(ex.InScope, w.ProviderID)
		if !excluded[w.ProviderID] {
			ex.Eligible = append(ex.Eligible, w)
		}
	}
	return ex
}
