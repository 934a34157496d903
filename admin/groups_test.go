package admin

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// createGroup creates a group through the API and returns its ID.
func (e *testEnv) createGroup(name string) string {
	e.t.Helper()
	r := e.do("POST", "/api/v1/delivery-groups", map[string]any{"name": name})
	if r.Code != 201 {
		e.t.Fatalf("create group: %d %s", r.Code, r.Body)
	}
	return r.str("data.id")
}

// strs turns a decoded JSON array into strings.
func strs(v any) []string {
	var out []string
	xs, _ := v.([]any)
	for _, x := range xs {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func TestGroupCRUD(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/delivery-groups", map[string]any{"name": "  Transactional ", "description": "password resets\nand receipts"})
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	id := r.str("data.id")
	if !store.ValidID(store.PrefixGroup, id) || r.str("data.name") != "Transactional" ||
		r.str("data.description") != "password resets\nand receipts" || len(strs(r.get("data.provider_ids"))) != 0 ||
		r.get("data.provider_ids") == nil || r.str("data.created_at") != "2026-03-01T12:00:00Z" ||
		r.Header.Get("Location") != "/api/v1/delivery-groups/"+id || r.Header.Get("ETag") != `W/"1"` {
		t.Fatalf("create: %v %s", r.Header, r.Body)
	}
	path := "/api/v1/delivery-groups/" + id

	// Members show up on the group.
	pid := e.createProvider(withGroup(validSMTP(), id))
	g := e.do("GET", path, nil)
	if g.Code != 200 || g.Header.Get("ETag") != `W/"1"` || !slices.Equal(strs(g.get("data.provider_ids")), []string{pid}) {
		t.Fatalf("get: %s", g.Body)
	}

	// PATCH: partial, null clears the description, {} keeps the version.
	e.clock.Advance(time.Minute)
	r = e.do("PATCH", path, map[string]any{"description": nil})
	if r.Code != 200 || r.str("data.name") != "Transactional" || r.get("data.description") != nil ||
		r.str("data.updated_at") != "2026-03-01T12:01:00Z" || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("patch: %v %s", r.Header, r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{}); r.Code != 200 || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("empty patch: %v %s", r.Header, r.Body)
	}
	r = e.do("PATCH", path, map[string]any{"name": "Tx"}, "If-Match", `W/"2"`)
	if r.Code != 200 || r.str("data.name") != "Tx" {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("PATCH", path, map[string]any{"name": "x"}, "If-Match", `W/"2"`), 409, "conflict", "")
	expectErr(t, e.do("DELETE", path, nil, "If-Match", `W/"1"`), 409, "conflict", "")

	// List with pagination.
	for i := 0; i < 3; i++ {
		e.createGroup(fmt.Sprint("g", i))
	}
	r = e.do("GET", "/api/v1/delivery-groups?limit=3", nil)
	if r.Code != 200 || len(r.get("data").([]any)) != 3 || r.get("pagination.has_more") != true || r.str("data.0.id") != id {
		t.Fatalf("list: %s", r.Body)
	}
	next := e.do("GET", "/api/v1/delivery-groups?limit=3&cursor="+r.str("pagination.next_cursor"), nil)
	if len(next.get("data").([]any)) != 1 || next.get("pagination.has_more") != false {
		t.Fatalf("page 2: %s", next.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/delivery-groups?limit=0", nil), 400, "invalid_parameter", "limit")

	// DELETE moves the member out.
	r = e.do("DELETE", path, nil, "If-Match", `W/"3"`)
	if r.Code != 200 || r.get("data.deleted") != true || !slices.Equal(strs(r.get("data.moved_providers")), []string{pid}) {
		t.Fatalf("delete: %s", r.Body)
	}
	if p := e.do("GET", "/api/v1/providers/"+pid, nil); p.get("data.group_id") != nil || p.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("provider after group delete: %v %s", p.Header, p.Body)
	}
	expectErr(t, e.do("GET", path, nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", path, nil), 404, "not_found", "")
}

func withGroup(b map[string]any, id any) map[string]any { b["group_id"] = id; return b }

func TestGroupValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"name missing", map[string]any{"description": "x"}, 422, "validation_error", "name"},
		{"name null", map[string]any{"name": nil}, 422, "validation_error", "name"},
		{"name blank", map[string]any{"name": "  "}, 422, "validation_error", "name"},
		{"name too long", map[string]any{"name": strings.Repeat("n", 101)}, 422, "validation_error", "name"},
		{"name control", map[string]any{"name": "a\x00b"}, 422, "validation_error", "name"},
		{"name wrong type", map[string]any{"name": 5}, 400, "invalid_parameter", "name"},
		{"description too long", map[string]any{"name": "g", "description": strings.Repeat("d", 501)}, 422, "validation_error", "description"},
		{"description control", map[string]any{"name": "g", "description": "a\x07"}, 422, "validation_error", "description"},
		{"description wrong type", map[string]any{"name": "g", "description": []string{}}, 400, "invalid_parameter", "description"},
		{"unknown field", map[string]any{"name": "g", "provider_ids": []string{}}, 400, "invalid_parameter", "provider_ids"},
		{"not an object", `["g"]`, 400, "invalid_parameter", ""},
		{"malformed", `{"name":`, 400, "invalid_parameter", ""},
		{"empty body", ``, 400, "invalid_parameter", ""},
		{"max lengths ok", map[string]any{"name": strings.Repeat("n", 100), "description": strings.Repeat("d", 500)}, 201, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/delivery-groups", tc.body)
			if tc.status == 201 {
				if r.Code != 201 {
					t.Fatalf("%d %s", r.Code, r.Body)
				}
				return
			}
			expectErr(t, r, tc.status, tc.code, tc.field)
		})
	}
	id := e.createGroup("g")
	expectErr(t, e.do("PATCH", "/api/v1/delivery-groups/"+id, map[string]any{"name": nil}), 422, "validation_error", "name")
	expectErr(t, e.do("PATCH", "/api/v1/delivery-groups/"+id, map[string]any{"id": "x"}), 400, "invalid_parameter", "id")
	for _, bad := range []string{"dgrp_x", "dgrp_000000000000000000000000", "dprov_000000000000000000000000", "..%2f"} {
		expectErr(t, e.do("GET", "/api/v1/delivery-groups/"+bad, nil), 404, "not_found", "")
	}
}

// TestGroupsTeamIsolationAndPermissions: another team's group is a 404
// everywhere and an unknown reference in writes; permissions are enforced.
func TestGroupsTeamIsolationAndPermissions(t *testing.T) {
	e := newEnv(t)
	_, _, otherRoot := e.provision("other")
	other := []string{"Authorization", "Bearer " + otherRoot}
	r := e.do("POST", "/api/v1/delivery-groups", map[string]any{"name": "theirs"}, other...)
	foreign := r.str("data.id")
	mine := e.createGroup("mine")

	path := "/api/v1/delivery-groups/" + foreign
	expectErr(t, e.do("GET", path, nil), 404, "not_found", "")
	expectErr(t, e.do("PATCH", path, map[string]any{"name": "x"}), 404, "not_found", "")
	expectErr(t, e.do("DELETE", path, nil), 404, "not_found", "")
	if l := e.do("GET", "/api/v1/delivery-groups", nil); len(l.get("data").([]any)) != 1 || l.str("data.0.id") != mine {
		t.Fatalf("list shows other team's group: %s", l.Body)
	}
	// A provider cannot join it, a scope cannot name it.
	expectErr(t, e.do("POST", "/api/v1/providers", withGroup(validSMTP(), foreign)), 422, "validation_error", "group_id")
	e.secret("s3cret-Upstream-PW")
	expectErr(t, e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k",
		"send_scope": map[string]any{"type": "group", "group_public_ids": []string{mine, foreign}}}), 422, "validation_error", "send_scope.group_public_ids[1]")
	if g, _ := e.st.Group(otherKeyTeam(t, e, otherRoot), foreign); g.Name != "theirs" {
		t.Fatal("other team's group changed")
	}

	ro := e.addKey(e.team.ID, store.KeyRoot, "group.read")
	auth := []string{"Authorization", "Bearer " + ro}
	if r := e.do("GET", "/api/v1/delivery-groups/"+mine, nil, auth...); r.Code != 200 {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("POST", "/api/v1/delivery-groups", map[string]any{"name": "x"}, auth...), 403, "insufficient_permissions", "")
	expectErr(t, e.do("PATCH", "/api/v1/delivery-groups/"+mine, map[string]any{"name": "x"}, auth...), 403, "insufficient_permissions", "")
	expectErr(t, e.do("DELETE", "/api/v1/delivery-groups/"+mine, nil, auth...), 403, "insufficient_permissions", "")
	noGroups := e.addKey(e.team.ID, store.KeyRoot, "provider.*")
	expectErr(t, e.do("GET", "/api/v1/delivery-groups", nil, "Authorization", "Bearer "+noGroups), 403, "insufficient_permissions", "")
	expectErr(t, e.do("GET", "/api/v1/delivery-groups", nil, "Authorization", ""), 401, "authentication_required", "")
	expectErr(t, e.do("PUT", "/api/v1/delivery-groups/"+mine, nil), 405, "method_not_allowed", "")
}

func otherKeyTeam(t *testing.T, e *testEnv, secret string) string {
	t.Helper()
	k, err := e.st.KeyBySecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k.TeamID
}

func TestProviderGroupMembership(t *testing.T) {
	e := newEnv(t)
	g1, g2 := e.createGroup("one"), e.createGroup("two")
	r := e.do("POST", "/api/v1/providers", withGroup(validSMTP(), g1))
	e.secret("s3cret-Upstream-PW")
	if r.Code != 201 || r.str("data.group_id") != g1 {
		t.Fatalf("create in group: %s", r.Body)
	}
	path := "/api/v1/providers/" + r.str("data.id")
	if r := e.do("PATCH", path, map[string]any{"group_id": g2}); r.Code != 200 || r.str("data.group_id") != g2 {
		t.Fatalf("move: %s", r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{"group_id": nil}); r.Code != 200 || r.get("data.group_id") != nil {
		t.Fatalf("leave with null: %s", r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{"group_id": g1}); r.Code != 200 || r.str("data.group_id") != g1 {
		t.Fatal(r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{"group_id": ""}); r.Code != 200 || r.get("data.group_id") != nil {
		t.Fatalf("leave with empty string: %s", r.Body)
	}
	before, _ := e.st.Provider(r.str("data.id"))
	for _, bad := range []any{"dgrp_000000000000000000000000", "dgrp_x", "nope", e.managed.ID} {
		expectErr(t, e.do("PATCH", path, map[string]any{"group_id": bad, "name": "changed"}), 422, "validation_error", "group_id")
	}
	expectErr(t, e.do("PATCH", path, map[string]any{"group_id": 3}), 400, "invalid_parameter", "group_id")
	if after, _ := e.st.Provider(before.ID); after.Version != before.Version || after.Name != before.Name {
		t.Fatal("failed PATCH wrote")
	}
	// Several problems still come back together with group_id.
	r = e.do("POST", "/api/v1/providers", withGroup(map[string]any{"name": "", "smtp_host": "h.example.com", "smtp_port": 25}, "dgrp_000000000000000000000000"))
	if got := fmt.Sprint(r.fields()); got != "[name group_id]" {
		t.Fatalf("fields %s: %s", got, r.Body)
	}

	// The managed account cannot join a group; leaving none is "edited".
	mpath := "/api/v1/providers/" + e.managed.ID
	r = e.do("PATCH", mpath, map[string]any{"group_id": g1})
	expectErr(t, r, 422, "validation_error", "group_id")
	if !strings.Contains(r.str("error.message"), "cannot join a delivery group") {
		t.Fatalf("message: %s", r.Body)
	}
	expectErr(t, e.do("PATCH", mpath, map[string]any{"group_id": nil}), 422, "validation_error", "id")
	if p, _ := e.st.Provider(e.managed.ID); p.GroupID != "" {
		t.Fatal("managed account joined a group")
	}
}

// TestDeleteGroupReportsScopes: DELETE lists the keys and mailboxes whose
// scope named the group (revoked keys excluded) and moves its providers.
func TestDeleteGroupReportsScopes(t *testing.T) {
	e := newEnv(t)
	g, keep := e.createGroup("bulk"), e.createGroup("tx")
	p1 := e.createProvider(withGroup(validSMTP(), g))
	p2 := e.createProvider(withGroup(validSMTP(), g))
	p3 := e.createProvider(withGroup(validSMTP(), keep))
	key := func(groups ...string) string {
		r := e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k",
			"send_scope": map[string]any{"type": "group", "group_public_ids": groups}})
		if r.Code != 201 {
			t.Fatalf("key: %s", r.Body)
		}
		e.secret(r.str("data.key"))
		uniq := map[string]bool{}
		for _, g := range groups {
			uniq[g] = true
		}
		if ids := strs(r.get("data.send_scope.group_public_ids")); len(ids) != len(uniq) {
			t.Fatalf("scope ids %v", ids)
		}
		return r.str("data.id")
	}
	k1 := key(g, keep, g) // duplicates are stored once
	k2 := key(keep)
	revoked := key(g)
	if r := e.do("DELETE", "/api/v1/api-keys/"+revoked, nil); r.Code != 200 {
		t.Fatal(r.Body)
	}
	mb := e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "a@example.com",
		"send_scope": map[string]any{"type": "group", "group_public_ids": []string{g}}})
	if mb.Code != 201 {
		t.Fatal(mb.Body)
	}

	r := e.do("DELETE", "/api/v1/delivery-groups/"+g, nil)
	moved := strs(r.get("data.moved_providers"))
	slices.Sort(moved)
	want := []string{p1, p2}
	slices.Sort(want)
	if r.Code != 200 || !slices.Equal(moved, want) || !slices.Equal(strs(r.get("data.affected_api_keys")), []string{k1}) ||
		!slices.Equal(strs(r.get("data.affected_mailboxes")), []string{mb.str("data.id")}) {
		t.Fatalf("delete: %s (k2 %s)", r.Body, k2)
	}
	if p, _ := e.st.Provider(p3); p.GroupID != keep {
		t.Fatal("other group's provider moved")
	}
	// A group nobody used answers with empty lists, not nulls.
	r = e.do("DELETE", "/api/v1/delivery-groups/"+e.createGroup("empty"), nil)
	for _, f := range []string{"moved_providers", "affected_api_keys", "affected_mailboxes"} {
		if l, ok := r.get("data." + f).([]any); !ok || len(l) != 0 {
			t.Fatalf("%s: %s", f, r.Body)
		}
	}
}

func TestScopeValidation(t *testing.T) {
	e := newEnv(t)
	g := e.createGroup("g")
	pid := e.createProvider(validSMTP())
	scope := func(sc map[string]any) map[string]any { return map[string]any{"name": "k", "send_scope": sc} }
	for _, tc := range []struct {
		name  string
		sc    map[string]any
		field string
	}{
		{"group empty list", map[string]any{"type": "group", "group_public_ids": []string{}}, "send_scope.group_public_ids"},
		{"group missing list", map[string]any{"type": "group"}, "send_scope.group_public_ids"},
		{"group malformed id", map[string]any{"type": "group", "group_public_ids": []string{"grp_1"}}, "send_scope.group_public_ids[0]"},
		{"group provider id", map[string]any{"type": "group", "group_public_ids": []string{pid}}, "send_scope.group_public_ids[0]"},
		{"group with providers", map[string]any{"type": "group", "group_public_ids": []string{g}, "provider_public_ids": []string{pid}}, "send_scope.provider_public_ids"},
		{"providers with groups", map[string]any{"type": "providers", "provider_public_ids": []string{pid}, "group_public_ids": []string{g}}, "send_scope.group_public_ids"},
		{"providers group id", map[string]any{"type": "providers", "provider_public_ids": []string{g}}, "send_scope.provider_public_ids[0]"},
		{"all with groups", map[string]any{"type": "all", "group_public_ids": []string{g}}, "send_scope.type"},
		{"unknown type", map[string]any{"type": "domain"}, "send_scope.type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectErr(t, e.do("POST", "/api/v1/api-keys", scope(tc.sc)), 422, "validation_error", tc.field)
			expectErr(t, e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "x@example.com", "send_scope": tc.sc}), 422, "validation_error", tc.field)
		})
	}
	r := e.do("POST", "/api/v1/api-keys", scope(map[string]any{"type": "group", "group_public_ids": []string{g}}))
	if r.Code != 201 || r.str("data.send_scope.type") != "group" || r.str("data.send_scope.group_public_ids.0") != g {
		t.Fatal(r.Body)
	}
	e.secret(r.str("data.key"))
	k, _ := e.st.KeyBySecret(r.str("data.key"))
	if k.SendScope.Type != "group" || !slices.Equal(k.SendScope.GroupPublicIDs, []string{g}) {
		t.Fatalf("stored scope %+v", k.SendScope)
	}
}
