package dashboard

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin"
)

// TestOperatorNodes: the operator's Nodes page shows what GET
// /operator/nodes answers — in single-node mode this daemon alone, marked
// as this node, with its version, start time and state — escaped; a
// team's session has no such page.
func TestOperatorNodes(t *testing.T) {
	started := time.Date(2026, 12, 7, 6, 30, 0, 0, time.UTC)
	e := newEnv(t, func(o *admin.Options) {
		o.Sending.Hostname = "mx1.example.test"
		o.Version = "1.2.3<b>"
		o.StartedAt = started
	})
	b := e.browser()
	if p := b.signIn(testOperator); p.Code != http.StatusSeeOther {
		t.Fatalf("operator sign-in: %d %s", p.Code, p.Body)
	}
	if p := b.get("/operator"); !strings.Contains(p.Body, `href="/operator/nodes"`) {
		t.Fatalf("no Nodes link in the operator view: %s", p.Body)
	}
	p := b.get("/operator/nodes")
	if p.Code != http.StatusOK {
		t.Fatalf("nodes: %d %s", p.Code, p.Body)
	}
	if p.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", p.Header.Get("Cache-Control"))
	}
	for _, want := range []string{"<code>mx1.example.test</code>", "this node", "1.2.3&lt;b&gt;", "2026-12-07 06:30:00 UTC", "single node"} {
		if !strings.Contains(p.Body, want) {
			t.Fatalf("%q not on the Nodes page: %s", want, p.Body)
		}
	}
	if strings.Contains(p.Body, "1.2.3<b>") {
		t.Fatal("version not escaped")
	}
	tb := e.browser()
	tb.signIn(e.root)
	if p := tb.get("/operator/nodes"); p.Code != http.StatusNotFound {
		t.Fatalf("nodes page for a team: %d", p.Code)
	}
}

// twoNodes is a cluster of two as admin.ClusterView answers it, this node
// degraded (etcd out of reach): what cmd's adapter over the cluster
// package reports, without an etcd.
type twoNodes struct{}

func (twoNodes) Nodes(context.Context) ([]admin.NodeInfo, error) {
	return []admin.NodeInfo{{NodeID: "n1", AdvertiseURL: "http://127.0.0.1:8025", Version: "1", Self: true},
		{NodeID: "n2", AdvertiseURL: "http://127.0.0.1:8026", Version: "1"}}, nil
}
func (twoNodes) Membership() (string, string) { return "n1", "degraded" }
func (twoNodes) Forward(context.Context, string, string, string) (int, []byte, bool, error) {
	return 0, nil, false, nil
}
func (twoNodes) Peers(context.Context) ([]admin.NodeInfo, error) { return nil, nil }
func (twoNodes) Ask(context.Context, string, string, string) (int, []byte, error) {
	return 0, nil, nil
}
func (twoNodes) WaitApplied(context.Context, int64) {}

// TestOperatorNodesCluster: in cluster mode every registered node is
// listed with its advertise URL; this node's state is its membership
// (here degraded: an amber badge, as it still serves on its last view), the others' "live".
func TestOperatorNodesCluster(t *testing.T) {
	e := newEnv(t, func(o *admin.Options) { o.Cluster = twoNodes{} })
	b := e.browser()
	b.signIn(testOperator)
	p := b.get("/operator/nodes")
	for _, want := range []string{"<code>http://127.0.0.1:8026</code>", `<span class="badge badge-pending">degraded</span>`, `<span class="badge badge-active">live</span>`} {
		if !strings.Contains(p.Body, want) {
			t.Fatalf("%q not on the Nodes page: %s", want, p.Body)
		}
	}
}
