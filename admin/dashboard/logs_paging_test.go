package dashboard

import (
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// TestLogsNextPage: the Logs page's "Next page" link carries the API's
// cursor and the filters as a working query (html/template escaped a bare
// query's "=" and "&", so the link used to start over from page one with
// no filter).
func TestLogsNextPage(t *testing.T) {
	e := newEnv(t)
	base := time.Now().UTC().Add(-time.Hour)
	var ms []*store.Message
	for i := range 120 {
		at := base.Add(time.Duration(i) * time.Second)
		st := state.MessageSent
		if i%2 == 1 {
			st = state.MessageFailed
		}
		ms = append(ms, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID, Source: "smtp",
			From: "a@example.com", Recipients: []store.Recipient{{Address: "b@example.net", Status: st}},
			Status: st, CreatedAt: at, UpdatedAt: at})
	}
	if err := e.st.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signIn(e.root)
	all := b.get("/logs")
	second := b.get(html.UnescapeString(extract(t, all.Body, `href="(/logs\?[^"]+)">Next page`)))
	ids := map[string]bool{}
	for _, p := range []string{all.Body, second.Body} {
		for _, m := range ms {
			if strings.Contains(p, m.ID) {
				ids[m.ID] = true
			}
		}
	}
	if second.Code != http.StatusOK || len(ids) != 100 {
		t.Fatalf("two pages of 50 show %d different messages", len(ids))
	}
	// A filter survives the page turn: 60 sent, 50 a page.
	sent := b.get("/logs?status=sent")
	next := html.UnescapeString(extract(t, sent.Body, `href="(/logs\?[^"]+)">Next page`))
	if !strings.Contains(next, "status=sent") {
		t.Fatalf("next page drops the filter: %s", next)
	}
	if p := b.get(next); strings.Contains(p.Body, "badge-failed") || strings.Count(p.Body, `href="/messages/`) != 10 {
		t.Fatalf("the next page of sent mail: %d rows, or failed mail", strings.Count(p.Body, `href="/messages/`))
	}
}
