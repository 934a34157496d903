package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

func TestCreateKeys(t *testing.T) {
	e := newEnv(t)

	// A sending key: default scope "all", the secret once.
	r := e.do("POST", "/api/v1/api-keys", map[string]any{"name": "app server"})
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	secret := r.str("data.key")
	if !strings.HasPrefix(secret, store.SecretPrefixSending) || len(secret) < 40 ||
		r.str("data.prefix") != secret[:12] || r.str("data.type") != "sending" || r.str("data.send_scope.type") != "all" ||
		r.get("data.permissions") != nil || r.str("data.status") != "active" || r.str("data.created_at") != "2026-03-01T12:00:00Z" ||
		r.Header.Get("Location") != "/api/v1/api-keys/"+r.str("data.id") {
		t.Fatalf("sending key: %v %s", r.Header, r.Body)
	}
	e.secret(secret) // from now on no answer may show it
	k, err := e.st.KeyBySecret(secret)
	if err != nil || k.ID != r.str("data.id") || k.Type != store.KeySending {
		t.Fatalf("stored: %+v %v", k, err)
	}
	if strings.Contains(string(k.Hash), secret) {
		t.Fatal("secret stored in clear")
	}
	// It authenticates but may not manage.
	expectErr(t, e.do("GET", "/api/v1/providers", nil, "Authorization", "Bearer "+secret), 403, "insufficient_permissions", "")

	// A root key with the default permissions works on the API.
	r = e.do("POST", "/api/v1/api-keys", map[string]any{"name": "ci", "type": "root"})
	root := r.str("data.key")
	if r.Code != 201 || !strings.HasPrefix(root, store.SecretPrefixRoot) || r.get("data.send_scope") != nil ||
		len(r.get("data.permissions").([]any)) != 1 || r.str("data.permissions.0") != "*" {
		t.Fatalf("root: %s", r.Body)
	}
	e.secret(root)
	if r := e.do("GET", "/api/v1/providers", nil, "Authorization", "Bearer "+root); r.Code != 200 {
		t.Fatal(r.Body)
	}

	// A limited root key may do exactly what it lists.
	r = e.do("POST", "/api/v1/api-keys", map[string]any{"name": "ro", "type": "root", "permissions": []string{"provider.read", "email.read", "provider.read"}})
	ro := r.str("data.key")
	e.secret(ro)
	if r.Code != 201 || len(r.get("data.permissions").([]any)) != 2 {
		t.Fatalf("limited: %s", r.Body)
	}
	if r := e.do("GET", "/api/v1/providers", nil, "Authorization", "Bearer "+ro); r.Code != 200 {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("POST", "/api/v1/providers", validSMTP(), "Authorization", "Bearer "+ro), 403, "insufficient_permissions", "")
	expectErr(t, e.do("DELETE", "/api/v1/api-keys/"+e.rootKey.ID, nil, "Authorization", "Bearer "+ro), 403, "insufficient_permissions", "")

	// Scope "providers" needs existing providers of this team.
	pid := e.createProvider(validSMTP())
	r = e.do("POST", "/api/v1/api-keys", map[string]any{"name": "scoped",
		"send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{pid, pid}}})
	if r.Code != 201 || r.str("data.send_scope.type") != "providers" || len(r.get("data.send_scope.provider_public_ids").([]any)) != 1 {
		t.Fatalf("scoped: %s", r.Body)
	}
	e.secret(r.str("data.key"))
}

func TestCreateKeyValidation(t *testing.T) {
	e := newEnv(t)
	_, otherKey, _ := e.provision("other")
	ps, _ := e.st.Providers(otherKey.TeamID)
	foreign := ps[0].ID
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		code   string
		field  string
	}{
		{"name missing", map[string]any{"type": "root"}, 422, "validation_error", "name"},
		{"name blank", map[string]any{"name": " "}, 422, "validation_error", "name"},
		{"name wrong type", map[string]any{"name": 1}, 400, "invalid_parameter", "name"},
		{"type unknown", map[string]any{"name": "k", "type": "admin"}, 422, "validation_error", "type"},
		{"type wrong type", map[string]any{"name": "k", "type": true}, 400, "invalid_parameter", "type"},
		{"unknown field", map[string]any{"name": "k", "scope": "all"}, 400, "invalid_parameter", "scope"},
		{"permissions on sending", map[string]any{"name": "k", "permissions": []string{"*"}}, 422, "validation_error", "permissions"},
		{"permissions empty", map[string]any{"name": "k", "type": "root", "permissions": []string{}}, 422, "validation_error", "permissions"},
		{"permission unknown", map[string]any{"name": "k", "type": "root", "permissions": []string{"provider.read", "provider.fly"}}, 422, "validation_error", "permissions[1]"},
		{"permission unknown resource", map[string]any{"name": "k", "type": "root", "permissions": []string{"nope.*"}}, 422, "validation_error", "permissions[0]"},
		{"permissions wrong type", map[string]any{"name": "k", "type": "root", "permissions": "*"}, 400, "invalid_parameter", "permissions"},
		{"scope on root", map[string]any{"name": "k", "type": "root", "send_scope": map[string]any{"type": "all"}}, 422, "validation_error", "send_scope"},
		{"scope type missing", map[string]any{"name": "k", "send_scope": map[string]any{}}, 422, "validation_error", "send_scope.type"},
		{"scope type unknown", map[string]any{"name": "k", "send_scope": map[string]any{"type": "some"}}, 422, "validation_error", "send_scope.type"},
		{"scope unknown field", map[string]any{"name": "k", "send_scope": map[string]any{"type": "all", "ids": []string{}}}, 400, "invalid_parameter", "send_scope.ids"},
		{"scope not object", map[string]any{"name": "k", "send_scope": "all"}, 400, "invalid_parameter", "send_scope"},
		{"scope all with ids", map[string]any{"name": "k", "send_scope": map[string]any{"type": "all", "provider_public_ids": []string{e.managed.ID}}}, 422, "validation_error", "send_scope.type"},
		{"scope providers empty", map[string]any{"name": "k", "send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{}}}, 422, "validation_error", "send_scope.provider_public_ids"},
		{"scope providers missing", map[string]any{"name": "k", "send_scope": map[string]any{"type": "providers"}}, 422, "validation_error", "send_scope.provider_public_ids"},
		{"scope provider unknown", map[string]any{"name": "k", "send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{"dprov_000000000000000000000000"}}}, 422, "validation_error", "send_scope.provider_public_ids[0]"},
		{"scope provider malformed", map[string]any{"name": "k", "send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{"x"}}}, 422, "validation_error", "send_scope.provider_public_ids[0]"},
		{"scope provider of other team", map[string]any{"name": "k", "send_scope": map[string]any{"type": "providers", "provider_public_ids": []string{e.managed.ID, foreign}}}, 422, "validation_error", "send_scope.provider_public_ids[1]"},
		{"scope group unknown", map[string]any{"name": "k", "send_scope": map[string]any{"type": "group", "group_public_ids": []string{"dgrp_000000000000000000000000"}}}, 422, "validation_error", "send_scope.group_public_ids[0]"},
		{"scope ids wrong type", map[string]any{"name": "k", "send_scope": map[string]any{"type": "providers", "provider_public_ids": "dprov_x"}}, 400, "invalid_parameter", "send_scope.provider_public_ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectErr(t, e.do("POST", "/api/v1/api-keys", tc.body), tc.status, tc.code, tc.field)
		})
	}
	keys, _ := e.st.Keys(e.team.ID)
	if len(keys) != 1 {
		t.Fatalf("a failed create stored a key: %d keys", len(keys))
	}
}

func TestKeyCannotGrantMoreThanItHolds(t *testing.T) {
	e := newEnv(t)
	limited := e.addKey(e.team.ID, store.KeyRoot, "provider.*", "key.create")
	auth := []string{"Authorization", "Bearer " + limited}
	expectErr(t, e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k", "type": "root"}, auth...), 403, "insufficient_permissions", "permissions")
	expectErr(t, e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k", "type": "root", "permissions": []string{"*"}}, auth...), 403, "insufficient_permissions", "permissions[0]")
	expectErr(t, e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k", "type": "root", "permissions": []string{"key.*"}}, auth...), 403, "insufficient_permissions", "permissions[0]")
	for _, ok := range [][]string{{"provider.read"}, {"provider.*"}, {"key.create", "provider.delete"}} {
		r := e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k", "type": "root", "permissions": ok}, auth...)
		if r.Code != 201 {
			t.Fatalf("%v: %s", ok, r.Body)
		}
		e.secret(r.str("data.key"))
	}
	// Sending keys carry no management permissions; key.create suffices.
	if r := e.do("POST", "/api/v1/api-keys", map[string]any{"name": "s"}, auth...); r.Code != 201 {
		t.Fatal(r.Body)
	}
}

func TestListGetRevokeKeys(t *testing.T) {
	e := newEnv(t)
	var secrets []string
	for _, typ := range []string{"sending", "root", "sending"} {
		r := e.do("POST", "/api/v1/api-keys", map[string]any{"name": typ, "type": typ})
		secrets = append(secrets, r.str("data.key"))
		e.secret(r.str("data.key"))
	}
	r := e.do("GET", "/api/v1/api-keys", nil)
	items := r.get("data").([]any)
	if r.Code != 200 || len(items) != 4 { // + the bootstrap root key
		t.Fatalf("list: %s", r.Body)
	}
	for _, it := range items {
		if _, has := it.(map[string]any)["key"]; has {
			t.Fatalf("list shows a secret field: %s", r.Body)
		}
	}
	if r := e.do("GET", "/api/v1/api-keys?type=sending", nil); len(r.get("data").([]any)) != 2 {
		t.Fatal(r.Body)
	}
	if r := e.do("GET", "/api/v1/api-keys?limit=3", nil); r.get("pagination.has_more") != true || len(r.get("data").([]any)) != 3 {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/api-keys?type=admin", nil), 400, "invalid_parameter", "type")

	k, _ := e.st.KeyBySecret(secrets[1])
	g := e.do("GET", "/api/v1/api-keys/"+k.ID, nil)
	if g.Code != 200 || g.str("data.id") != k.ID || g.str("data.type") != "root" || g.get("data.revoked_at") != nil {
		t.Fatal(g.Body)
	}

	// Revocation is immediate.
	auth := []string{"Authorization", "Bearer " + secrets[1]}
	if r := e.do("GET", "/api/v1/providers", nil, auth...); r.Code != 200 {
		t.Fatal(r.Body)
	}
	e.clock.Advance(time.Minute)
	r = e.do("DELETE", "/api/v1/api-keys/"+k.ID, nil)
	if r.Code != 200 || r.str("data.status") != "revoked" || r.str("data.revoked_at") == "" {
		t.Fatalf("revoke: %s", r.Body)
	}
	first := r.str("data.revoked_at")
	expectErr(t, e.do("GET", "/api/v1/providers", nil, auth...), 401, "authentication_required", "")
	// Revoking again keeps the first time.
	e.clock.Advance(time.Hour)
	if r := e.do("DELETE", "/api/v1/api-keys/"+k.ID, nil); r.Code != 200 || r.str("data.revoked_at") != first {
		t.Fatal(r.Body)
	}
	// A key may revoke itself; its next request is refused.
	r = e.do("DELETE", "/api/v1/api-keys/"+e.rootKey.ID, nil)
	if r.Code != 200 || r.str("data.status") != "revoked" {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/api-keys", nil), 401, "authentication_required", "")
}

// TestRotateCannotTakeOverAStrongerKey: rotating a root key hands out its
// new secret, so a key may only rotate root keys it could have created;
// key.update alone must not turn into the team's "*" key.
func TestRotateCannotTakeOverAStrongerKey(t *testing.T) {
	e := newEnv(t)
	limited := e.addKey(e.team.ID, store.KeyRoot, "key.update", "provider.read")
	auth := []string{"Authorization", "Bearer " + limited}
	expectErr(t, e.do("POST", "/api/v1/api-keys/"+e.rootKey.ID+"/rotate", nil, auth...), 403, "insufficient_permissions", "")
	r := e.do("GET", "/api/v1/api-keys/"+e.rootKey.ID, nil)
	if r.Code != 200 || r.get("data.rotated_at") != nil {
		t.Fatalf("the full key was rotated by a limited one: %s", r.Body)
	}
	// Within its own powers it may rotate: a read-only key, and a sending key.
	r = e.do("POST", "/api/v1/api-keys", map[string]any{"name": "ro", "type": "root", "permissions": []string{"provider.read"}})
	e.secret(r.str("data.key"))
	if rr := e.do("POST", "/api/v1/api-keys/"+r.str("data.id")+"/rotate", nil, auth...); rr.Code != 200 {
		t.Fatalf("rotating a weaker root key: %s", rr.Body)
	} else {
		e.secret(rr.str("data.key"))
	}
	r = e.do("POST", "/api/v1/api-keys", map[string]any{"name": "app"})
	e.secret(r.str("data.key"))
	if rr := e.do("POST", "/api/v1/api-keys/"+r.str("data.id")+"/rotate", nil, auth...); rr.Code != 200 {
		t.Fatalf("rotating a sending key: %s", rr.Body)
	} else {
		e.secret(rr.str("data.key"))
	}
}
