package admin

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// simNode is one node's log for the merge tests: IDs newest first, and a
// page function that behaves as logPage does, including a search bound
// (a page that stops after looking at scanMax records, with fewer items
// and a cursor below what it looked at).
type simNode struct {
	ids     []string // newest first
	match   func(string) bool
	scanMax int // 0: no bound
}

func (n simNode) page(before string, limit int) logPart {
	var p logPart
	scanned := 0
	for _, id := range n.ids {
		if before != "" && id >= before {
			continue
		}
		scanned++
		if n.match == nil || n.match(id) {
			if len(p.items) == limit {
				p.next = p.items[limit-1].ID
				return p
			}
			p.items = append(p.items, emailLogItem{ID: id})
		}
		if n.scanMax > 0 && scanned == n.scanMax {
			p.next = id
			return p
		}
	}
	return p
}

// TestMergeLogPagesExactlyOnce pages through merged node pages of random
// logs (interleaved in time, some nodes empty, some pages stopped early by
// a search bound) and checks every matching message comes exactly once,
// newest first, whatever the page size.
func TestMergeLogPagesExactlyOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for round := range 200 {
		nodes := make([]simNode, 1+rng.IntN(4))
		var want []string
		match := func(id string) bool { return id[len(id)-4] != '0' } // "a search"
		filtered := round%2 == 1
		for i := range nodes {
			for range rng.IntN(40) {
				at := base.Add(time.Duration(rng.IntN(3600)) * time.Second)
				id := fmt.Sprintf("%s-n%d", store.NewIDAt(store.PrefixMessage, at), i)
				nodes[i].ids = append(nodes[i].ids, id)
				if !filtered || match(id) {
					want = append(want, id)
				}
			}
			slices.Sort(nodes[i].ids)
			slices.Reverse(nodes[i].ids)
			if filtered {
				nodes[i].match = match
				nodes[i].scanMax = 1 + rng.IntN(10)
			}
		}
		slices.Sort(want)
		slices.Reverse(want)
		limit := 1 + rng.IntN(12)
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 500 {
				t.Fatalf("round %d: no end after %d pages", round, pages)
			}
			parts := make([]logPart, len(nodes))
			for i, n := range nodes {
				parts[i] = n.page(cursor, limit)
			}
			items, next := mergeLogPages(parts, limit)
			if len(items) > limit {
				t.Fatalf("round %d: %d items on a page of %d", round, len(items), limit)
			}
			for _, it := range items {
				got = append(got, it.ID)
			}
			if next == "" {
				break
			}
			if cursor != "" && next >= cursor {
				t.Fatalf("round %d: cursor did not move down: %s then %s", round, cursor, next)
			}
			cursor = next
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("round %d (limit %d, filtered %v): got %d ids, want %d in newest-first order", round, limit, filtered, len(got), len(want))
		}
	}
}

// TestMergeLogPagesFloor: items below the point a node stopped at wait
// for the next page, even when another node gave them.
func TestMergeLogPagesFloor(t *testing.T) {
	parts := []logPart{
		{items: []emailLogItem{{ID: "eml_9-a"}, {ID: "eml_5-a"}, {ID: "eml_1-a"}}},
		{items: []emailLogItem{{ID: "eml_8-b"}}, next: "eml_7-b"}, // b stopped at 7
	}
	items, next := mergeLogPages(parts, 10)
	if len(items) != 2 || items[0].ID != "eml_9-a" || items[1].ID != "eml_8-b" || next != "eml_7-b" {
		t.Fatalf("got %v next %q", items, next)
	}
	items, next = mergeLogPages(parts, 1)
	if len(items) != 1 || items[0].ID != "eml_9-a" || next != "eml_9-a" {
		t.Fatalf("limit 1: got %v next %q", items, next)
	}
	if items, next := mergeLogPages([]logPart{{}, {}}, 5); items == nil || len(items) != 0 || next != "" {
		t.Fatalf("empty: %v %q", items, next)
	}
}

// TestNodeLogPartRefusesBadCursor: a node's answer whose cursor is not
// one of ours is not merged (the client would get it back as its own).
func TestNodeLogPartRefusesBadCursor(t *testing.T) {
	for _, cur := range []string{`null`, `"!!"`, `"` + base64.RawURLEncoding.EncodeToString([]byte("eml_x/../y")) + `"`} {
		body := `{"ok":true,"data":[],"pagination":{"has_more":true,"next_cursor":` + cur + `},"meta":{"request_id":"x"}}`
		if _, err := nodeLogPart([]byte(body)); err == nil {
			t.Fatalf("next_cursor %s accepted", cur)
		}
	}
	if _, err := nodeLogPart([]byte(`{"ok":true,"data":{"not":"a list"}}`)); err == nil {
		t.Fatal("data that is not a list accepted")
	}
}

// TestAddMetricsRefusesOtherWindow: reports of different windows are
// not added bucket by bucket.
func TestAddMetricsRefusesOtherWindow(t *testing.T) {
	mk := func(from string, n int) metricsReport {
		r := metricsReport{Interval: "hour", From: from, To: "x", Series: make([]metricsPoint, 2)}
		r.Totals.Total, r.Series[1].Sent, r.Series[1].Total = n, n, n
		return r
	}
	rep := mk("a", 2)
	if err := addMetrics(&rep, mk("a", 3)); err != nil || rep.Totals.Total != 5 || rep.Series[1].Sent != 5 {
		t.Fatalf("%v %+v", err, rep)
	}
	if err := addMetrics(&rep, mk("b", 3)); err == nil {
		t.Fatal("another window was added")
	}
}

// TestAddUsage sums by provider and leaves out lines it has no place for.
func TestAddUsage(t *testing.T) {
	items := []*usageItem{{ProviderID: "dprov_a", Sent7d: 1, Total7d: 1}, {ProviderID: "dprov_b"}}
	addUsage(items, []*usageItem{nil, {ProviderID: "dprov_a", Sent7d: 2, Total7d: 3, Failed7d: 1, SentToday: 2}, {ProviderID: "dprov_gone", Sent7d: 9}})
	if a := items[0]; a.Sent7d != 3 || a.Total7d != 4 || a.Failed7d != 1 || a.SentToday != 2 || items[1].Total7d != 0 {
		t.Fatalf("%+v %+v", *items[0], *items[1])
	}
}

// twoNodes is an env (n1) whose one peer, n2, is a second env: a fan-out
// asks n2's real handler, as a node, with n2's key standing for the
// caller's (in a cluster the key is state of record, the same on every
// node; here each env has its own store).
func twoNodes(t *testing.T) (n1, n2 *testEnv, fc *fakeCluster) {
	const token = "cluster-token-0123456789"
	fc = &fakeCluster{}
	n2 = newEnv(t, func(o *Options) { o.Cluster = &fakeCluster{}; o.ClusterToken = token })
	n1 = newEnv(t, func(o *Options) { o.Cluster = fc; o.ClusterToken = token })
	fc.ask = func(path, authorization string) (int, []byte, error) {
		if authorization != "Bearer "+n1.root {
			t.Errorf("asked with %q, not the caller's credential", authorization)
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+n2.root)
		req.Header.Set(ForwardedHeader, "n1")
		req.Header.Set(TokenHeader, token)
		rec := httptest.NewRecorder()
		n2.srv.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes(), nil
	}
	return n1, n2, fc
}

// addNodeMessage stores a message of e's team named for node at at.
func addNodeMessage(t *testing.T, e *testEnv, node string, at time.Time, status state.Message) string {
	t.Helper()
	m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at) + "-" + node, TeamID: e.team.ID, From: "a@example.com",
		Status: status, State: store.StateQueued, NextAttemptAt: at,
		Recipients: []store.Recipient{{Address: "r@example.net", Status: status}}, CreatedAt: at, UpdatedAt: at}
	if err := e.st.Enqueue(m, []byte("x")); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

// TestFanOutLogsAndMetrics: asked of n1, the log pages and the metrics
// hold both nodes' mail; the node asked in turn answers for itself only.
func TestFanOutLogsAndMetrics(t *testing.T) {
	n1, n2, fc := twoNodes(t)
	start := n1.clock.Now().Add(-3 * time.Hour)
	var want []string
	for i := range 9 {
		e, node := n1, "n1"
		if i%3 != 0 {
			e, node = n2, "n2"
		}
		want = append(want, addNodeMessage(t, e, node, start.Add(time.Duration(i)*time.Minute), state.MessageSent))
	}
	slices.Reverse(want)
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
	// n2's clock is ahead: the window is n1's all the same.
	n2.clock.Advance(90 * time.Minute)
	r := n1.do("GET", "/api/v1/emails/metrics", nil)
	if r.Code != 200 || r.get("data.totals.sent") != float64(9) {
		t.Fatalf("metrics: %d %s", r.Code, r.Body)
	}
	// n2, asked as a node, answers for itself and asks no one.
	asks := fc.asks.Load()
	if r := n2.do("GET", "/api/v1/emails/logs", nil); r.Code != 200 || len(r.get("data").([]any)) != 6 {
		t.Fatalf("n2 alone: %d %s", r.Code, r.Body)
	}
	if fc.asks.Load() != asks {
		t.Fatal("a request n2 answered was fanned out")
	}
}

// TestFanOutRefusals: a node that does not answer, or answers what cannot
// be merged, makes the answer a 503 naming it; bad cursors are the
// client's 400 before any node is asked.
func TestFanOutRefusals(t *testing.T) {
	n1, _, fc := twoNodes(t)
	for _, q := range []string{"!!", base64.RawURLEncoding.EncodeToString([]byte("eml_../x")),
		base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("a", 65))), base64.RawURLEncoding.EncodeToString([]byte("EML_A"))} {
		expectErr(t, n1.do("GET", "/api/v1/emails/logs?cursor="+url.QueryEscape(q), nil), 400, "invalid_parameter", "cursor")
	}
	if fc.asks.Load() != 0 {
		t.Fatalf("%d nodes asked for a bad request", fc.asks.Load())
	}
	fc.ask = func(string, string) (int, []byte, error) { return 0, nil, fmt.Errorf("connection refused") }
	for _, p := range []string{"/api/v1/emails/logs", "/api/v1/emails/metrics", "/api/v1/providers/usage"} {
		r := n1.do("GET", p, nil)
		expectErr(t, r, 503, "service_unavailable", "")
		if !strings.Contains(r.str("error.message"), "n2") || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %s", p, r.Body)
		}
	}
	fc.ask = func(string, string) (int, []byte, error) {
		return http.StatusOK, []byte(`{"ok":true,"data":[],"pagination":{"has_more":true,"next_cursor":"!!"}}`), nil
	}
	expectErr(t, n1.do("GET", "/api/v1/emails/logs", nil), 503, "service_unavailable", "")
	// Stats count providers (state of record): no node is asked.
	asks := fc.asks.Load()
	if r := n1.do("GET", "/api/v1/providers/stats", nil); r.Code != 200 || fc.asks.Load() != asks {
		t.Fatalf("stats: %d, %d asks", r.Code, fc.asks.Load()-asks)
	}
}

// lockout is an AuthAttempts that refuses every address while on.
type lockout struct{ on atomic.Bool }

func (l *lockout) ReserveAuth(string) (bool, time.Duration, func(bool)) {
	return !l.on.Load(), time.Second, func(bool) {}
}

// TestProvenNodeNotChargedTwice: a request the cluster token proves is a
// node's is not charged to the key's rate nor to the (asking node's)
// address's failed-authentication limit: the asking node charged the
// client already. A client's own request is charged as always.
func TestProvenNodeNotChargedTwice(t *testing.T) {
	const token = "cluster-token-0123456789"
	lim := &lockout{}
	e := newEnv(t, func(o *Options) {
		o.Cluster = &fakeCluster{}
		o.ClusterToken = token
		o.HTTP.RateLimit, o.HTTP.RateWindow = 1, time.Minute
		o.HTTP.AuthAttempts = lim
	})
	node := []string{ForwardedHeader, "n2", TokenHeader, token}
	for range 3 {
		if r := e.do("GET", "/api/v1/emails/logs", nil, node...); r.Code != 200 {
			t.Fatalf("node request: %d %s", r.Code, r.Body)
		}
	}
	if r := e.do("GET", "/api/v1/emails/logs", nil); r.Code != 200 {
		t.Fatalf("the client's first request: %d %s", r.Code, r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/emails/logs", nil), 429, "rate_limit_exceeded", "")
	lim.on.Store(true)
	if r := e.do("GET", "/api/v1/emails/logs", nil, node...); r.Code != 200 {
		t.Fatalf("node request from a locked-out address: %d %s", r.Code, r.Body)
	}
	if r := e.do("GET", "/api/v1/emails/logs", nil, ForwardedHeader, "n2"); r.Code != 403 {
		t.Fatalf("a node request without the token: %d %s", r.Code, r.Body)
	}
}
