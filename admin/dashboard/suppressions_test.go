package dashboard

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// TestSuppressionsPage: add with a reason (shown as text), a reason left
// out is the API's field error with the address kept, search, paging
// through the API's cursor, remove; an address with a quote round-trips
// through the remove form.
func TestSuppressionsPage(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.root)
	if p := b.get("/suppressions"); p.Code != http.StatusOK || !strings.Contains(p.Body, "Nothing suppressed") || p.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("empty list: %d %s", p.Code, p.Body)
	}
	xss := `<script>alert(1)</script>`
	p := b.post("/suppressions", "/suppressions", url.Values{"email": {"Shared@Example.com"}, "reason": {xss}})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("add: %d %s", p.Code, p.Body)
	}
	p = b.follow(p)
	if !strings.Contains(p.Body, "shared@example.com") || !strings.Contains(p.Body, "&lt;script&gt;alert(1)&lt;/script&gt;") || strings.Contains(p.Body, xss) {
		t.Fatalf("added entry not shown as text: %s", p.Body)
	}
	// Adding it again keeps the entry as it was, and says so.
	if p := b.follow(b.post("/suppressions", "/suppressions", url.Values{"email": {"shared@example.com"}, "reason": {"other"}})); !strings.Contains(p.Body, "already on the list") {
		t.Fatalf("second add: %s", p.Body)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "shared@example.com"); sup == nil || sup.Detail != xss {
		t.Fatalf("second add changed the entry: %+v", sup)
	}
	if p := b.post("/suppressions", "/suppressions", url.Values{"email": {"x@example.com"}}); p.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(p.Body, `id="reason-error"`) || !strings.Contains(p.Body, `value="x@example.com"`) {
		t.Fatalf("no reason: %d %s", p.Code, p.Body)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "x@example.com"); sup != nil {
		t.Fatal("an entry without a reason was stored")
	}
	// Paging: 55 more entries, 50 a page.
	for i := range 55 {
		if _, _, err := e.st.AddSuppression(&store.Suppression{TeamID: e.team.ID, Address: fmt.Sprintf("user%02d@example.net", i),
			Reason: store.SuppressHardBounce, Source: "dsn", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	first := b.get("/suppressions")
	next := extract(t, first.Body, `href="(/suppressions\?[^"]+)">Next page`)
	second := b.get(html.UnescapeString(next))
	rows := strings.Count(first.Body, `name="email" value=`) + strings.Count(second.Body, `name="email" value=`)
	if rows != 56 || strings.Contains(second.Body, "Next page") || !strings.Contains(second.Body, "user54@example.net") {
		t.Fatalf("paging: %d rows over two pages, want 56", rows)
	}
	if !strings.Contains(first.Body, ">hard bounce</span>") || !strings.Contains(first.Body, ">added by hand</span>") {
		t.Fatalf("reasons not worded: %s", first.Body)
	}
	if s := b.get("/suppressions?search=USER07"); strings.Count(s.Body, `name="email" value=`) != 1 || !strings.Contains(s.Body, "user07@example.net") {
		t.Fatalf("search: %s", s.Body)
	}
	// An address with a quote, added and removed through the forms.
	b.post("/suppressions", "/suppressions", url.Values{"email": {"o'brien@example.com"}, "reason": {"asked"}})
	if sup, _ := e.st.Suppressed(e.team.ID, "o'brien@example.com"); sup == nil {
		t.Fatal("o'brien not added")
	}
	if p := b.post("/suppressions", "/suppressions/remove", url.Values{"email": {"o'brien@example.com"}}); p.Code != http.StatusSeeOther ||
		!strings.Contains(b.get("/suppressions").Body, "Removed: mail to o&#39;brien@example.com is accepted again.") {
		t.Fatalf("remove: %d", p.Code)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "o'brien@example.com"); sup != nil {
		t.Fatal("o'brien still suppressed")
	}
}

// TestSuppressionsHostile: another team neither sees nor removes a
// team's entries; a post without the CSRF token, or from another site,
// changes nothing; a key holding only suppression.read gets no forms and
// its posts are the API's refusals.
func TestSuppressionsHostile(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.st.AddSuppression(&store.Suppression{TeamID: e.team.ID, Address: "victim@example.com",
		Reason: store.SuppressManual, Source: "api", Detail: "secret reason of team A", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	teamB, rootB := e.provision("other")
	mb := e.browser()
	mb.signIn(rootB)
	if p := mb.get("/suppressions?search=victim"); strings.Contains(p.Body, "victim@example.com") || strings.Contains(p.Body, "secret reason") {
		t.Fatal("another team's entry is listed")
	}
	if p := mb.post("/suppressions", "/suppressions/remove", url.Values{"email": {"victim@example.com"}}); p.Code != http.StatusSeeOther ||
		!strings.Contains(mb.get("/suppressions").Body, "Not removed") {
		t.Fatalf("cross-team remove: %d", p.Code)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "victim@example.com"); sup == nil {
		t.Fatal("another team removed the entry")
	}
	// The address goes into the API path escaped: a "remove" naming
	// another route is no request to that route.
	keysBefore, _ := e.st.Keys(teamB.ID)
	for _, hostile := range []string{"../../api-keys/" + keysBefore[0].ID, "..%2F..%2Fapi-keys%2F" + keysBefore[0].ID, "x@example.com/../../api-keys"} {
		mb.post("/suppressions", "/suppressions/remove", url.Values{"email": {hostile}})
	}
	if k, _ := e.st.Key(keysBefore[0].ID); k == nil || !k.Active() {
		t.Fatal("a suppression form reached the key route")
	}
	b := e.browser()
	b.signIn(e.root)
	b.get("/suppressions")
	if p := b.do("POST", "/suppressions/remove", url.Values{"email": {"victim@example.com"}}); p.Code != http.StatusForbidden {
		t.Fatalf("remove without CSRF: %d", p.Code)
	}
	if p := b.do("POST", "/suppressions", url.Values{"email": {"new@example.com"}, "reason": {"x"}}); p.Code != http.StatusForbidden {
		t.Fatalf("add without CSRF: %d", p.Code)
	}
	form := url.Values{"email": {"victim@example.com"}, "csrf": {b.csrf("/suppressions")}}
	req, _ := http.NewRequest("POST", e.srv.URL+"/suppressions/remove", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if res, err := b.c.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site remove: %v %v", res, err)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "victim@example.com"); sup == nil {
		t.Fatal("removed without a valid form")
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "new@example.com"); sup != nil {
		t.Fatal("added without a valid form")
	}
	ro := e.browser()
	ro.signIn(e.addKey(e.team.ID, store.KeyRoot, "suppression.read"))
	p := ro.get("/suppressions")
	if !strings.Contains(p.Body, "victim@example.com") || strings.Contains(p.Body, "Suppress an address") || strings.Contains(p.Body, ">Remove<") {
		t.Fatalf("read-only key: %s", p.Body)
	}
	if p := ro.post("/suppressions", "/suppressions/remove", url.Values{"email": {"victim@example.com"}}); !strings.Contains(ro.get("/suppressions").Body, "suppression.delete") {
		t.Fatalf("read-only remove: %d", p.Code)
	}
	if p := ro.post("/suppressions", "/suppressions", url.Values{"email": {"n@example.com"}, "reason": {"x"}}); !strings.Contains(p.Body, "suppression.create") {
		t.Fatalf("read-only add: %d %s", p.Code, p.Body)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "victim@example.com"); sup == nil {
		t.Fatal("a read-only key removed the entry")
	}
}
