package relay

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestAttemptRoutingBySetReference: with 200 providers in scope an
// attempt's record keeps its routing decision and a reference to the
// candidate set, stored once, not the 200 providers with their weights
// (about 16 KB encoded, written and decoded at every update of the
// message, which cost delivery more than half its rate). The reference
// and the decision expand to the whole explanation.
func TestAttemptRoutingBySetReference(t *testing.T) {
	h := newHarness(t, nil)
	for range 199 {
		h.addProvider("fake", nil)
	}
	c := h.dial(h.secret)
	var ids []string
	for range 3 {
		reply, err := send(c, "a@example.com", []string{"b@example.com"}, "Subject: x\r\n\r\nhi\r\n")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, reply[strings.LastIndex(reply, " ")+1:])
	}
	var refs []string
	for _, id := range ids {
		m := h.waitMessage(id)
		raw := m.Attempts[0].Routing
		if len(raw) > 512 {
			t.Fatalf("attempt stores %d bytes of routing explanation: %.200s…", len(raw), raw)
		}
		var st routing.Stored
		if err := json.Unmarshal(raw, &st); err != nil || st.Set == "" || st.Picked != m.Attempts[0].ProviderID {
			t.Fatalf("stored routing %s (%v)", raw, err)
		}
		if want := time.Now().UTC().Format(store.RouteSetDayLayout); !strings.HasPrefix(st.Set, want+"/") {
			t.Errorf("set reference %q is not of day %s", st.Set, want)
		}
		refs = append(refs, st.Set)
		body, err := h.store.RouteSet(h.team, st.Set)
		if err != nil {
			t.Fatal(err)
		}
		var set []routing.Weighted
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		ex := routing.Expand(st.ScopeType, set, st.Decision)
		if len(ex.InScope) != 200 || len(ex.Eligible) != 200 || ex.Total != 200*routing.DefaultWeight || ex.Picked == "" {
			t.Fatalf("expanded: %d in scope, %d eligible, total %d, picked %q", len(ex.InScope), len(ex.Eligible), ex.Total, ex.Picked)
		}
	}
	if refs[0] != refs[1] || refs[1] != refs[2] {
		t.Errorf("one scope, one provider list, yet sets %v", refs)
	}
	// Another team cannot read the set through its own ID.
	if _, err := h.store.RouteSet(store.NewID(store.PrefixTeam), refs[0]); err != store.ErrNotFound {
		t.Errorf("another team's read: %v", err)
	}
}

// TestRouteSetFollowsProviderChanges: a weight change reloads the team's
// provider list, and the next attempt refers to a set with the new weight.
func TestRouteSetFollowsProviderChanges(t *testing.T) {
	h := newHarness(t, nil)
	h.addProvider("fake", nil)
	c := h.dial(h.secret)
	setOf := func() []routing.Weighted {
		reply, err := send(c, "a@example.com", []string{"b@example.com"}, "Subject: x\r\n\r\nhi\r\n")
		if err != nil {
			t.Fatal(err)
		}
		m := h.waitMessage(reply[strings.LastIndex(reply, " ")+1:])
		var st routing.Stored
		if err := json.Unmarshal(m.Attempts[0].Routing, &st); err != nil {
			t.Fatal(err)
		}
		body, err := h.store.RouteSet(h.team, st.Set)
		if err != nil {
			t.Fatal(err)
		}
		var set []routing.Weighted
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		return set
	}
	before := setOf()
	w := 7
	h.updateProvider(func(p *store.Provider) { p.Percentage = &w })
	after := setOf()
	weight := func(set []routing.Weighted) int {
		for _, x := range set {
			if x.ProviderID == h.provID {
				return x.Weight
			}
		}
		return -1
	}
	if weight(before) != routing.DefaultWeight || weight(after) != 7 {
		t.Fatalf("weight before %d, after %d", weight(before), weight(after))
	}
}

// TestSweepRouteSets: retention drops whole days of sets, oldest first,
// in bounded batches.
func TestSweepRouteSets(t *testing.T) {
	h := newHarness(t, nil)
	for _, day := range []string{"20260101", "20260102", "20260103"} {
		for _, hash := range []string{"a", "b", "c"} {
			if err := h.store.PutRouteSet(h.team, day, hash, []byte("[]")); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, more, err := h.store.SweepRouteSets("20260103", 4)
	if err != nil || n != 4 || !more {
		t.Fatalf("first batch: %d, more %v, %v", n, more, err)
	}
	n, more, err = h.store.SweepRouteSets("20260103", 4)
	if err != nil || n != 2 || more {
		t.Fatalf("second batch: %d, more %v, %v", n, more, err)
	}
	if _, err := h.store.RouteSet(h.team, "20260102/c"); err != store.ErrNotFound {
		t.Errorf("a swept day's set: %v", err)
	}
	if _, err := h.store.RouteSet(h.team, "20260103/a"); err != nil {
		t.Errorf("a kept day's set: %v", err)
	}
}
