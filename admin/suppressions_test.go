package admin

import (
	"fmt"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// TestSuppressionsAPI walks the list: manual entries need a reason, the
// list pages in address order with opaque cursors and searches by part of
// the address, and deleting an entry lets the address receive mail again.
func TestSuppressionsAPI(t *testing.T) {
	e := newEnv(t)
	expectErr(t, e.do("POST", "/api/v1/suppressions", map[string]any{"email": "a@example.com"}), 422, "validation_error", "reason")
	expectErr(t, e.do("POST", "/api/v1/suppressions", map[string]any{"email": "not an address", "reason": "x"}), 422, "validation_error", "email")
	expectErr(t, e.do("POST", "/api/v1/suppressions", map[string]any{"email": "a@example.com", "reason": "bad\r\nline"}), 422, "validation_error", "reason")
	for i := range 5 {
		r := e.do("POST", "/api/v1/suppressions", map[string]any{"email": fmt.Sprintf("User%d@Example.com", i), "reason": "asked to stop"})
		if r.Code != 201 || r.str("data.email") != fmt.Sprintf("user%d@example.com", i) || r.str("data.reason") != "manual" || r.str("data.detail") != "asked to stop" {
			t.Fatalf("create %d: %d %s", i, r.Code, r.Body)
		}
	}
	// Listing again is not an error and does not change the entry.
	if r := e.do("POST", "/api/v1/suppressions", map[string]any{"email": "user0@example.com", "reason": "other"}); r.Code != 200 || r.str("data.detail") != "asked to stop" {
		t.Fatalf("again: %d %s", r.Code, r.Body)
	}
	r := e.do("GET", "/api/v1/suppressions?limit=2", nil)
	if r.Code != 200 || len(r.get("data").([]any)) != 2 || r.get("pagination.has_more") != true {
		t.Fatalf("page 1: %s", r.Body)
	}
	var seen []string
	cur := ""
	for range 5 {
		q := "/api/v1/suppressions?limit=2"
		if cur != "" {
			q += "&cursor=" + cur
		}
		r := e.do("GET", q, nil)
		for _, it := range r.get("data").([]any) {
			seen = append(seen, it.(map[string]any)["email"].(string))
		}
		if r.get("pagination.has_more") != true {
			break
		}
		cur = r.str("pagination.next_cursor")
	}
	if fmt.Sprint(seen) != "[user0@example.com user1@example.com user2@example.com user3@example.com user4@example.com]" {
		t.Fatalf("pages: %v", seen)
	}
	if r := e.do("GET", "/api/v1/suppressions?search=ER3", nil); len(r.get("data").([]any)) != 1 || r.str("data.0.email") != "user3@example.com" {
		t.Fatalf("search: %s", r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/suppressions?cursor=!!", nil), 400, "invalid_parameter", "cursor")
	if r := e.do("GET", "/api/v1/suppressions/USER2@example.com", nil); r.Code != 200 || r.str("data.email") != "user2@example.com" {
		t.Fatalf("get: %s", r.Body)
	}
	if r := e.do("DELETE", "/api/v1/suppressions/user2@example.com", nil); r.Code != 200 || r.get("data.deleted") != true {
		t.Fatalf("delete: %s", r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/suppressions/user2@example.com", nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", "/api/v1/suppressions/user2@example.com", nil), 404, "not_found", "")
	if sup, err := e.st.Suppressed(e.team.ID, "user2@example.com"); err != nil || sup != nil {
		t.Fatalf("store still lists it: %v %v", sup, err)
	}
}

// TestSuppressionsTeamIsolation is a hostile tenant: another team can
// neither see, remove nor page into this team's entries, and its own
// entry for the same address is its own.
func TestSuppressionsTeamIsolation(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.st.AddSuppression(&store.Suppression{TeamID: e.team.ID, Address: "victim@example.com",
		Reason: store.SuppressHardBounce, Source: "dsn", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, _, other := e.provision("other")
	as := []string{"Authorization", "Bearer " + other}
	expectErr(t, e.do("GET", "/api/v1/suppressions/victim@example.com", nil, as...), 404, "not_found", "")
	expectErr(t, e.do("DELETE", "/api/v1/suppressions/victim@example.com", nil, as...), 404, "not_found", "")
	if r := e.do("GET", "/api/v1/suppressions?search=victim", nil, as...); len(r.get("data").([]any)) != 0 {
		t.Fatalf("other team lists: %s", r.Body)
	}
	// A cursor naming an address sorting before ours does not leak it.
	if r := e.do("GET", "/api/v1/suppressions?cursor=YUBleGFtcGxlLmNvbQ", nil, as...); r.Code != 200 || len(r.get("data").([]any)) != 0 {
		t.Fatalf("cursor: %s", r.Body)
	}
	if r := e.do("POST", "/api/v1/suppressions", map[string]any{"email": "victim@example.com", "reason": "mine"}, as...); r.Code != 201 {
		t.Fatalf("other's own entry: %s", r.Body)
	}
	if r := e.do("DELETE", "/api/v1/suppressions/victim@example.com", nil, as...); r.Code != 200 {
		t.Fatalf("other deletes its own: %s", r.Body)
	}
	if sup, _ := e.st.Suppressed(e.team.ID, "victim@example.com"); sup == nil || sup.Reason != store.SuppressHardBounce {
		t.Fatalf("the first team's entry changed: %+v", sup)
	}
	ro := e.addKey(e.team.ID, store.KeyRoot, "suppression.read")
	expectErr(t, e.do("DELETE", "/api/v1/suppressions/victim@example.com", nil, "Authorization", "Bearer "+ro), 403, "insufficient_permissions", "")
}

// TestProviderReturnPathDomain: an smtp provider takes a return-path
// domain (shown, editable, cleared with null); other types refuse it, as
// does a value that is not a domain.
func TestProviderReturnPathDomain(t *testing.T) {
	e := newEnv(t)
	body := validSMTP()
	body["return_path_domain"] = "Bounces.Example.com"
	id := e.createProvider(body)
	if r := e.do("GET", "/api/v1/providers/"+id, nil); r.str("data.return_path_domain") != "bounces.example.com" {
		t.Fatalf("created: %s", r.Body)
	}
	expectErr(t, e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"return_path_domain": "not a domain"}), 422, "validation_error", "return_path_domain")
	if r := e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"return_path_domain": nil}); r.Code != 200 || r.get("data.return_path_domain") != nil {
		t.Fatalf("cleared: %d %s", r.Code, r.Body)
	}
	ses := map[string]any{"name": "own ses", "type": "ses", "ses_region": "eu-west-1",
		"ses_access_key_id": "AKIAEXAMPLEEXAMPLE01", "ses_secret_access_key": "very/secret+key",
		"ses_endpoint": "https://email.eu-west-1.amazonaws.com", "return_path_domain": "bounces.example.com"}
	expectErr(t, e.do("POST", "/api/v1/providers", ses), 422, "validation_error", "return_path_domain")
}
