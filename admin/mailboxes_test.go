package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// createMailbox creates one through the API and returns its ID.
func (e *testEnv) createMailbox(body map[string]any) string {
	e.t.Helper()
	r := e.do("POST", "/api/v1/mailboxes", body)
	if r.Code != 201 {
		e.t.Fatalf("create mailbox: %d %s", r.Code, r.Body)
	}
	return r.str("data.id")
}

// credActive resolves secret through the store the way the relay does.
func (e *testEnv) credActive(secret string) (active, found bool) {
	e.t.Helper()
	c, err := e.st.CredentialBySecret(secret)
	if err != nil {
		return false, false
	}
	return c.Active, true
}

func TestMailboxCRUD(t *testing.T) {
	e := newEnv(t)
	g := e.createGroup("tx")
	r := e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "Billing@Example.com", "display_name": " Billing ",
		"send_scope": map[string]any{"type": "group", "group_public_ids": []string{g}}})
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	id := r.str("data.id")
	if !store.ValidID(store.PrefixMailbox, id) || r.str("data.address") != "billing@example.com" ||
		r.str("data.display_name") != "Billing" || r.str("data.status") != "active" ||
		r.str("data.send_scope.type") != "group" || r.str("data.send_scope.group_public_ids.0") != g ||
		r.Header.Get("Location") != "/api/v1/mailboxes/"+id || r.Header.Get("ETag") != `W/"1"` ||
		r.str("data.created_at") != "2026-03-01T12:00:00Z" {
		t.Fatalf("create: %v %s", r.Header, r.Body)
	}
	// Defaults: scope "all", no display name.
	d := e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "ops@example.com"})
	if d.Code != 201 || d.str("data.send_scope.type") != "all" || d.get("data.display_name") != nil {
		t.Fatalf("defaults: %s", d.Body)
	}
	// The address is unique per team, case-insensitively.
	expectErr(t, e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "BILLING@example.com"}), 409, "conflict", "")

	path := "/api/v1/mailboxes/" + id
	if g := e.do("GET", path, nil); g.Code != 200 || g.Header.Get("ETag") != `W/"1"` || g.str("data.id") != id {
		t.Fatalf("get: %s", g.Body)
	}
	e.clock.Advance(time.Minute)
	r = e.do("PATCH", path, map[string]any{"display_name": nil, "send_scope": map[string]any{"type": "all"}, "address": "billing@EXAMPLE.com"}, "If-Match", `W/"1"`)
	if r.Code != 200 || r.get("data.display_name") != nil || r.str("data.send_scope.type") != "all" ||
		r.str("data.updated_at") != "2026-03-01T12:01:00Z" || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("patch: %v %s", r.Header, r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{}); r.Code != 200 || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("empty patch: %s", r.Body)
	}
	expectErr(t, e.do("PATCH", path, map[string]any{"display_name": "x"}, "If-Match", `W/"1"`), 409, "conflict", "")

	// List, filter, paginate.
	if l := e.do("GET", "/api/v1/mailboxes?limit=1", nil); len(l.get("data").([]any)) != 1 || l.get("pagination.has_more") != true || l.str("data.0.id") != id {
		t.Fatalf("list: %s", l.Body)
	}
	if r := e.do("POST", path+"/suspend", nil); r.Code != 200 || r.str("data.status") != "suspended" || r.Header.Get("ETag") != `W/"3"` {
		t.Fatalf("suspend: %s", r.Body)
	}
	if r := e.do("POST", path+"/suspend", nil); r.Code != 200 || r.Header.Get("ETag") != `W/"3"` {
		t.Fatalf("second suspend wrote: %v", r.Header)
	}
	if l := e.do("GET", "/api/v1/mailboxes?status=suspended", nil); len(l.get("data").([]any)) != 1 || l.str("data.0.id") != id {
		t.Fatalf("filter suspended: %s", l.Body)
	}
	if l := e.do("GET", "/api/v1/mailboxes?status=active", nil); len(l.get("data").([]any)) != 1 || l.str("data.0.address") != "ops@example.com" {
		t.Fatalf("filter active: %s", l.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/mailboxes?status=paused", nil), 400, "invalid_parameter", "status")
	if r := e.do("POST", path+"/resume", nil); r.Code != 200 || r.str("data.status") != "active" {
		t.Fatalf("resume: %s", r.Body)
	}

	// Delete frees the address.
	expectErr(t, e.do("DELETE", path, nil, "If-Match", `W/"1"`), 409, "conflict", "")
	if r := e.do("DELETE", path, nil); r.Code != 200 || r.get("data.deleted") != true {
		t.Fatalf("delete: %s", r.Body)
	}
	expectErr(t, e.do("GET", path, nil), 404, "not_found", "")
	e.createMailbox(map[string]any{"address": "billing@example.com"})
}

func TestMailboxValidation(t *testing.T) {
	e := newEnv(t)
	_, _, otherRoot := e.provision("other")
	r := e.do("POST", "/api/v1/delivery-groups", map[string]any{"name": "theirs"}, "Authorization", "Bearer "+otherRoot)
	foreignGroup := r.str("data.id")
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"address missing", map[string]any{"display_name": "x"}, 422, "validation_error", "address"},
		{"address null", map[string]any{"address": nil}, 422, "validation_error", "address"},
		{"address blank", map[string]any{"address": " "}, 422, "validation_error", "address"},
		{"address invalid", map[string]any{"address": "not-an-email"}, 422, "validation_error", "address"},
		{"address with name", map[string]any{"address": "Bob <bob@example.com>"}, 422, "validation_error", "address"},
		{"address no domain", map[string]any{"address": "bob@"}, 422, "validation_error", "address"},
		{"address bad domain", map[string]any{"address": "bob@-x.com"}, 422, "validation_error", "address"},
		{"address wrong type", map[string]any{"address": 1}, 400, "invalid_parameter", "address"},
		{"display_name injection", map[string]any{"address": "a@example.com", "display_name": "A\r\nBcc: x@y.z"}, 422, "validation_error", "display_name"},
		{"display_name too long", map[string]any{"address": "a@example.com", "display_name": strings.Repeat("d", 201)}, 422, "validation_error", "display_name"},
		{"scope not object", map[string]any{"address": "a@example.com", "send_scope": "all"}, 400, "invalid_parameter", "send_scope"},
		{"scope unknown field", map[string]any{"address": "a@example.com", "send_scope": map[string]any{"type": "all", "x": 1}}, 400, "invalid_parameter", "send_scope.x"},
		{"scope foreign group", map[string]any{"address": "a@example.com", "send_scope": map[string]any{"type": "group", "group_public_ids": []string{foreignGroup}}}, 422, "validation_error", "send_scope.group_public_ids[0]"},
		{"scope foreign provider", map[string]any{"address": "a@example.com", "send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{otherManaged(t, e, otherRoot)}}}, 422, "validation_error", "send_scope.provider_public_ids[0]"},
		{"unknown field", map[string]any{"address": "a@example.com", "suspended": true}, 400, "invalid_parameter", "suspended"},
		{"not an object", `"a@example.com"`, 400, "invalid_parameter", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectErr(t, e.do("POST", "/api/v1/mailboxes", tc.body), tc.status, tc.code, tc.field)
		})
	}
	if ms, _ := e.st.Mailboxes(e.team.ID); len(ms) != 0 {
		t.Fatalf("a failed create stored a mailbox: %d", len(ms))
	}

	id := e.createMailbox(map[string]any{"address": "a@example.com"})
	path := "/api/v1/mailboxes/" + id
	for _, tc := range []struct {
		body   map[string]any
		status int
		field  string
	}{
		{map[string]any{"address": "b@example.com"}, 422, "address"},
		{map[string]any{"address": nil}, 422, "address"},
		{map[string]any{"send_scope": nil}, 422, "send_scope"},
		{map[string]any{"send_scope": map[string]any{"type": "group", "group_public_ids": []string{foreignGroup}}}, 422, "send_scope.group_public_ids[0]"},
		{map[string]any{"send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{}}}, 422, "send_scope.provider_public_ids"},
		{map[string]any{"display_name": "ok", "status": "suspended"}, 400, "status"},
	} {
		code := "validation_error"
		if tc.status == 400 {
			code = "invalid_parameter"
		}
		expectErr(t, e.do("PATCH", path, tc.body), tc.status, code, tc.field)
	}
	if m, _ := e.st.Mailbox(id); m.Version != 1 {
		t.Fatal("failed PATCH wrote")
	}
}

func otherManaged(t *testing.T, e *testEnv, secret string) string {
	t.Helper()
	ps, err := e.st.Providers(otherKeyTeam(t, e, secret))
	if err != nil || len(ps) == 0 {
		t.Fatal(ps, err)
	}
	return ps[0].ID
}

// TestMailboxPasswords covers the password lifecycle through the API and
// its effect on the credential lookups the relay uses: shown once, never
// listed, inactive while suspended, revoked immediately, gone with the
// mailbox.
func TestMailboxPasswords(t *testing.T) {
	e := newEnv(t)
	id := e.createMailbox(map[string]any{"address": "app@example.com"})
	base := "/api/v1/mailboxes/" + id + "/passwords"

	r := e.do("POST", base, map[string]any{"name": "web server"})
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	secret, pid := r.str("data.password"), r.str("data.id")
	if !strings.HasPrefix(secret, store.SecretPrefixSending) || len(secret) < 40 || !store.ValidID(store.PrefixPassword, pid) ||
		r.str("data.prefix") != secret[:12] || r.str("data.mailbox_id") != id || r.str("data.status") != "active" ||
		r.str("data.name") != "web server" || r.get("data.revoked_at") != nil {
		t.Fatalf("create: %s", r.Body)
	}
	e.secret(secret) // never again in any answer
	r2 := e.do("POST", base, map[string]any{"name": "cron"})
	secret2 := r2.str("data.password")
	e.secret(secret2)

	c, err := e.st.CredentialBySecret(secret)
	if err != nil || c.Kind != store.CredKindMailboxPassword || c.MailboxID != id || c.MailboxAddress != "app@example.com" || !c.Active {
		t.Fatalf("credential: %+v %v", c, err)
	}
	// A mailbox password is not a management credential.
	expectErr(t, e.do("GET", "/api/v1/providers", nil, "Authorization", "Bearer "+secret), 401, "authentication_required", "")

	l := e.do("GET", base, nil)
	if l.Code != 200 || len(l.get("data").([]any)) != 2 || l.str("data.0.id") != pid {
		t.Fatalf("list: %s", l.Body)
	}
	for _, it := range l.get("data").([]any) {
		if _, has := it.(map[string]any)["password"]; has {
			t.Fatalf("list shows a secret: %s", l.Body)
		}
	}
	if l := e.do("GET", base+"?limit=1", nil); l.get("pagination.has_more") != true {
		t.Fatal(l.Body)
	}

	// Suspension deactivates every password; resume restores them.
	e.do("POST", "/api/v1/mailboxes/"+id+"/suspend", nil)
	if a, f := e.credActive(secret); a || !f {
		t.Fatal("suspended mailbox's password still active")
	}
	e.do("POST", "/api/v1/mailboxes/"+id+"/resume", nil)
	if a, _ := e.credActive(secret); !a {
		t.Fatal("resumed mailbox's password inactive")
	}

	// Revocation is immediate and idempotent.
	e.clock.Advance(time.Minute)
	r = e.do("DELETE", base+"/"+pid, nil)
	if r.Code != 200 || r.str("data.status") != "revoked" || r.str("data.revoked_at") != "2026-03-01T12:01:00Z" {
		t.Fatalf("revoke: %s", r.Body)
	}
	if a, _ := e.credActive(secret); a {
		t.Fatal("revoked password active")
	}
	if a, _ := e.credActive(secret2); !a {
		t.Fatal("revoking one password affected another")
	}
	e.clock.Advance(time.Hour)
	if r := e.do("DELETE", base+"/"+pid, nil); r.str("data.revoked_at") != "2026-03-01T12:01:00Z" {
		t.Fatal(r.Body)
	}
	if l := e.do("GET", base, nil); l.str("data.0.status") != "revoked" {
		t.Fatal(l.Body)
	}

	// Validation and bad IDs.
	expectErr(t, e.do("POST", base, map[string]any{}), 422, "validation_error", "name")
	expectErr(t, e.do("POST", base, map[string]any{"name": ""}), 422, "validation_error", "name")
	expectErr(t, e.do("POST", base, map[string]any{"name": "x", "password": "mine"}), 400, "invalid_parameter", "password")
	expectErr(t, e.do("POST", base, map[string]any{"name": 1}), 400, "invalid_parameter", "name")
	expectErr(t, e.do("DELETE", base+"/mbxpw_x", nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", base+"/mbxpw_000000000000000000000000", nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", base+"/"+id, nil), 404, "not_found", "")
	other := e.createMailbox(map[string]any{"address": "other@example.com"})
	expectErr(t, e.do("DELETE", "/api/v1/mailboxes/"+other+"/passwords/"+pid, nil), 404, "not_found", "")
	expectErr(t, e.do("GET", "/api/v1/mailboxes/mbx_000000000000000000000000/passwords", nil), 404, "not_found", "")
	expectErr(t, e.do("POST", "/api/v1/mailboxes/mbx_000000000000000000000000/passwords", map[string]any{"name": "x"}), 404, "not_found", "")
	expectErr(t, e.do("GET", base+"/"+pid, nil), 405, "method_not_allowed", "")

	// Deleting the mailbox removes its passwords at once.
	if r := e.do("DELETE", "/api/v1/mailboxes/"+id, nil); r.Code != 200 {
		t.Fatal(r.Body)
	}
	if _, found := e.credActive(secret2); found {
		t.Fatal("deleted mailbox's password still resolves")
	}
	expectErr(t, e.do("GET", base, nil), 404, "not_found", "")
}

func TestMailboxTeamIsolationAndPermissions(t *testing.T) {
	e := newEnv(t)
	_, _, otherRoot := e.provision("other")
	oauth := []string{"Authorization", "Bearer " + otherRoot}
	r := e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "shared@example.com"}, oauth...)
	theirs := r.str("data.id")
	pw := e.do("POST", "/api/v1/mailboxes/"+theirs+"/passwords", map[string]any{"name": "p"}, oauth...)
	e.secret(pw.str("data.password"))
	theirPw := pw.str("data.id")
	// The same address is free in this team.
	mine := e.createMailbox(map[string]any{"address": "shared@example.com"})

	p := "/api/v1/mailboxes/" + theirs
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"GET", p, nil}, {"PATCH", p, map[string]any{"display_name": "x"}}, {"DELETE", p, nil},
		{"POST", p + "/suspend", nil}, {"POST", p + "/resume", nil},
		{"GET", p + "/passwords", nil}, {"POST", p + "/passwords", map[string]any{"name": "x"}},
		{"DELETE", p + "/passwords/" + theirPw, nil},
		{"DELETE", "/api/v1/mailboxes/" + mine + "/passwords/" + theirPw, nil},
	} {
		expectErr(t, e.do(req.method, req.path, req.body), 404, "not_found", "")
	}
	if a, _ := e.credActive(pw.str("data.password")); !a {
		t.Fatal("other team's password was affected")
	}
	if l := e.do("GET", "/api/v1/mailboxes", nil); len(l.get("data").([]any)) != 1 || l.str("data.0.id") != mine {
		t.Fatalf("list: %s", l.Body)
	}

	ro := []string{"Authorization", "Bearer " + e.addKey(e.team.ID, store.KeyRoot, "mailbox.read")}
	if r := e.do("GET", "/api/v1/mailboxes/"+mine+"/passwords", nil, ro...); r.Code != 200 {
		t.Fatal(r.Body)
	}
	for _, req := range []struct{ method, path string }{
		{"POST", "/api/v1/mailboxes"}, {"PATCH", "/api/v1/mailboxes/" + mine}, {"DELETE", "/api/v1/mailboxes/" + mine},
		{"POST", "/api/v1/mailboxes/" + mine + "/suspend"}, {"POST", "/api/v1/mailboxes/" + mine + "/passwords"},
	} {
		expectErr(t, e.do(req.method, req.path, map[string]any{}, ro...), 403, "insufficient_permissions", "")
	}
	none := []string{"Authorization", "Bearer " + e.addKey(e.team.ID, store.KeyRoot, "group.*")}
	expectErr(t, e.do("GET", "/api/v1/mailboxes", nil, none...), 403, "insufficient_permissions", "")
}
