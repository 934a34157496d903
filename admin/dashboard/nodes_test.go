package dashboard

import (
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
