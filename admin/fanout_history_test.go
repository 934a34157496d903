package admin

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// TestFanOutReadsDayFiles: the cluster-wide reports read each node's
// finished mail after the mover took it to the node's day files
// (store/history.go): the merged log pages (through the status index) and
// the metrics' counters hold every message of both nodes.
func TestFanOutReadsDayFiles(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	start := n1.clock.Now().Add(-3 * time.Hour)
	var want []string
	byNode := map[*testEnv][]*store.Message{}
	for i := range 9 {
		e, node := n1, "n1"
		if i%3 != 0 {
			e, node = n2, "n2"
		}
		at := start.Add(time.Duration(i) * time.Minute)
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at) + "-" + node, TeamID: e.team.ID, From: "a@example.com",
			Status: state.MessageSent, Recipients: []store.Recipient{{Address: "r@example.net", Status: state.MessageSent}},
			CreatedAt: at, UpdatedAt: at.Add(time.Second)}
		byNode[e] = append(byNode[e], m)
		want = append(want, m.ID)
	}
	slices.Reverse(want)
	for _, e := range []*testEnv{n1, n2} {
		if err := e.st.LoadHistory(byNode[e]); err != nil {
			t.Fatal(err)
		}
		// Everything finished before the cutoff moves (the store's own
		// mover may take part of it meanwhile): none is left to move.
		for more := true; more; {
			var err error
			if _, more, err = e.st.MoveHistory(time.Now().Add(time.Hour), 100); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		r := n1.do("GET", "/api/v1/emails/logs?limit=2&status=sent&cursor="+url.QueryEscape(cursor), nil)
		if r.Code != 200 || pages > 9 {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		for _, it := range r.get("data").([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		if r.get("pagination.has_more") != true {
			break
		}
		cursor = r.str("pagination.next_cursor")
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages:\n%v\nwant\n%v", got, want)
	}
	if r := n1.do("GET", "/api/v1/emails/metrics", nil); r.Code != 200 || r.get("data.totals.sent") != float64(9) {
		t.Fatalf("metrics: %d %s", r.Code, r.Body)
	}
	// They were read from the day files: dropping those takes every one.
	for e, ms := range byNode {
		if _, n, err := e.st.DropHistory(time.Now().Add(time.Hour)); err != nil || n != len(ms) {
			t.Fatalf("the day files held %d of %d messages (%v)", n, len(ms), err)
		}
	}
	if r := n1.do("GET", "/api/v1/emails/logs?status=sent", nil); r.Code != 200 || len(r.get("data").([]any)) != 0 {
		t.Fatalf("after the drop: %d %s", r.Code, r.Body)
	}
}
