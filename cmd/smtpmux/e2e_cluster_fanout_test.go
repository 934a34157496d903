package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin"
	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// e2eClusterToken is the cluster_token clusterExtra configures.
const e2eClusterToken = "e2e-cluster-token-0123456789"

// testClusterFanOut (a subtest of TestCluster): mail accepted by three
// nodes is listed, counted and paged through from any one of them, and
// only for the team that asks. It returns the team's root key (the etcd
// outage subtest asks with it while a node is down).
func testClusterFanOut(t *testing.T, nodes []*proc, up *testpeer.Server) string {
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	// A team of its own, so that the other subtests' mail is not counted.
	root := clusterTeam(t, n1, "fanout")
	prov := mustAs(t, n1, root, 201, "POST", "/providers", plainProvider(up, "fan", nil))["id"].(string)
	for _, p := range mustAsList(t, n1, root, "/providers") {
		if p["is_shared"] == true {
			mustAs(t, n1, root, 200, "POST", "/providers/"+p["id"].(string)+"/deactivate", nil)
		}
	}
	send := mustAs(t, n1, root, 201, "POST", "/api-keys", map[string]any{"name": "fan", "type": "sending"})["key"].(string)
	var want []string
	for i, d := range nodes {
		within(t, "the key on "+d.httpAddr, time.Second, func() bool {
			code, _ := d.apiAs(root, "GET", "/providers/"+prov, nil)
			return code == 200
		})
		c := d.client(send)
		for j := range 2 {
			id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, msgBody(fmt.Sprintf("fan-%d-%d", i, j)))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, id)
		}
		c.Close()
	}
	slices.Sort(want)
	slices.Reverse(want) // newest first: IDs begin with their time

	// Every node lists all six, once the three nodes delivered them.
	// (Polled every 100 ms, not within's 10: the key's API rate is 600 a
	// minute.)
	for deadline := time.Now().Add(15 * time.Second); len(mustAsList(t, n2, root, "/emails/logs?status=sent&limit=100")) != 6; {
		if time.Now().After(deadline) {
			t.Fatal("six messages not sent and listed by n2 within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range nodes {
		var got []string
		for _, it := range mustAsList(t, d, root, "/emails/logs?limit=100") {
			got = append(got, it["id"].(string))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("logs asked of %s:\n%v\nwant\n%v", d.httpAddr, got, want)
		}
	}

	// A figure for docs/cluster.md: the best of 5 of a whole-cluster page
	// against n1's own part (asked as a node), no assertion.
	best := func(hdr map[string]string) time.Duration {
		b := time.Hour
		for range 5 {
			t0 := time.Now()
			if code, _, _ := n1.apiHeaders(root, "GET", "/emails/logs?limit=100", nil, hdr); code != 200 {
				t.Fatalf("logs: %d", code)
			}
			b = min(b, time.Since(t0))
		}
		return b
	}
	t.Logf("GET /emails/logs from n1: %v for the cluster, %v for n1's own part", best(nil),
		best(map[string]string{admin.ForwardedHeader: "n2", admin.TokenHeader: e2eClusterToken}))

	// Pages of two, each asked of another node: each message exactly
	// once, newest first; the cursor means the same on every node.
	var paged []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 4 {
			t.Fatalf("no end after %d pages: %v", page, paged)
		}
		d := nodes[page%3]
		code, resp := d.apiAs(root, "GET", "/emails/logs?limit=2&cursor="+url.QueryEscape(cursor), nil)
		if code != 200 {
			t.Fatalf("page %d: %d %v", page, code, resp)
		}
		for _, it := range resp["data"].([]any) {
			paged = append(paged, it.(map[string]any)["id"].(string))
		}
		pg := resp["pagination"].(map[string]any)
		if pg["has_more"] != true {
			break
		}
		cursor = pg["next_cursor"].(string)
	}
	if strings.Join(paged, ",") != strings.Join(want, ",") {
		t.Fatalf("paged:\n%v\nwant\n%v", paged, want)
	}
	// Filters still apply on every node: a search for one node's mail.
	if items := mustAsList(t, n1, root, "/emails/logs?search="+url.QueryEscape("-n3")); len(items) != 2 {
		t.Fatalf("search for n3's mail from n1: %v", items)
	}

	// Counters add up across the nodes.
	if m := mustAs(t, n3, root, 200, "GET", "/emails/metrics", nil); fmt.Sprint(m["totals"]) != "map[failed:0 pending:0 rejected:0 sent:6 total:6]" {
		t.Fatalf("metrics from n3: %v", m["totals"])
	}
	usage := mustAs(t, n1, root, 200, "GET", "/providers/usage", nil)
	found := false
	for _, p := range usage["providers"].([]any) {
		if pm := p.(map[string]any); pm["provider_id"] == prov {
			found = true
			if pm["sent_7d"] != 6.0 || pm["total_7d"] != 6.0 || pm["sent_today"] != 6.0 {
				t.Fatalf("usage from n1: %v", pm)
			}
		}
	}
	if !found {
		t.Fatalf("usage from n1 lacks %s: %v", prov, usage)
	}
	// Stats count providers, state of record: the same from every node.
	for _, d := range nodes {
		if s := mustAs(t, d, root, 200, "GET", "/providers/stats", nil); s["total"] != 2.0 || s["active"] != 1.0 || s["inactive"] != 1.0 {
			t.Fatalf("stats from %s: %v", d.httpAddr, s)
		}
	}

	// Hostile: another team sees none of it through any node, and the
	// node-to-node path does not let it choose a team.
	tenant := clusterTeam(t, n1, "tenant")
	for _, d := range nodes {
		if items := mustAsList(t, d, tenant, "/emails/logs?limit=100"); len(items) != 0 {
			t.Fatalf("another team's logs from %s: %v", d.httpAddr, items)
		}
		if m := mustAs(t, d, tenant, 200, "GET", "/emails/metrics", nil); m["totals"].(map[string]any)["total"] != 0.0 {
			t.Fatalf("another team's metrics: %v", m)
		}
	}
	for _, tok := range []string{"", "wrong-token-0123456789", e2eClusterToken + "x"} {
		code, _, body := n2.apiHeaders(tenant, "GET", "/emails/logs", nil, map[string]string{admin.ForwardedHeader: "n1", admin.TokenHeader: tok})
		if code != 403 || !strings.Contains(string(body), "cluster_token") {
			t.Fatalf("node-to-node request with token %q: %d %s", tok, code, body)
		}
	}
	// With the token (as a node asks), the tenant's key still reads its
	// own team only, of that one node.
	code, _, body := n2.apiHeaders(tenant, "GET", "/emails/logs", nil, map[string]string{admin.ForwardedHeader: "n1", admin.TokenHeader: e2eClusterToken})
	if code != 200 || !strings.Contains(string(body), `"data":[]`) {
		t.Fatalf("tenant as a node: %d %s", code, body)
	}
	code, _, body = n2.apiHeaders(root, "GET", "/emails/logs", nil, map[string]string{admin.ForwardedHeader: "n1", admin.TokenHeader: e2eClusterToken})
	if code != 200 || strings.Count(string(body), `"id":"eml_`) != 2 || !strings.Contains(string(body), "-n2\"") {
		t.Fatalf("n2 asked as a node answers for itself: %d %s", code, body)
	}
	return root
}

// mustAsList is a list call with key that must answer 200: its items.
func mustAsList(t *testing.T, d *proc, key, path string) []map[string]any {
	t.Helper()
	code, resp := d.apiAs(key, "GET", path, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %v", path, code, resp)
	}
	var out []map[string]any
	for _, it := range resp["data"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}
