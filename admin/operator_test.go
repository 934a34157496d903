package admin

import (
	"strings"
	"sync"
	"testing"
)

func TestOperatorTeams(t *testing.T) {
	e := newEnv(t)
	op := []string{"Authorization", "Bearer " + testOperatorToken}

	expectErr(t, e.do("GET", "/api/v1/operator/teams", nil), 401, "authentication_required", "")
	expectErr(t, e.do("GET", "/api/v1/operator/teams", nil, "Authorization", "Bearer "+testOperatorToken+"x"), 401, "authentication_required", "")

	r := e.do("POST", "/api/v1/operator/teams", map[string]any{"name": "acme", "provider_limit": 5}, op...)
	if r.Code != 201 || r.str("data.team.name") != "acme" || r.get("data.team.provider_limit") != 5.0 ||
		!strings.HasPrefix(r.str("data.root_key.key"), "smx_root_") || r.str("data.root_key.permissions.0") != "*" {
		t.Fatalf("create: %d %s", r.Code, r.Body)
	}
	acme := r.str("data.root_key.key")
	e.secret(acme)
	expectErr(t, e.do("POST", "/api/v1/operator/teams", map[string]any{"name": "acme"}, op...), 409, "conflict", "")
	expectErr(t, e.do("POST", "/api/v1/operator/teams", map[string]any{"name": ""}, op...), 422, "validation_error", "name")
	expectErr(t, e.do("POST", "/api/v1/operator/teams", map[string]any{"name": "x", "provider_limit": -1}, op...), 422, "validation_error", "provider_limit")
	expectErr(t, e.do("POST", "/api/v1/operator/teams", map[string]any{"name": "x", "extra": 1}, op...), 400, "invalid_parameter", "extra")

	// The new team sees only its own managed account, active.
	p := e.do("GET", "/api/v1/providers", nil, "Authorization", "Bearer "+acme)
	if p.Code != 200 || len(p.get("data").([]any)) != 1 || p.get("data.0.is_shared") != true || p.str("data.0.status") != "active" ||
		p.str("data.0.id") == e.managed.ID {
		t.Fatalf("acme providers: %s", p.Body)
	}
	l := e.do("GET", "/api/v1/operator/teams", nil, op...)
	if l.Code != 200 || len(l.get("data").([]any)) != 2 {
		t.Fatalf("list: %s", l.Body)
	}
	// A team key is not an operator credential.
	expectErr(t, e.do("GET", "/api/v1/operator/teams", nil), 401, "authentication_required", "")
}

func TestOperatorDisabledWithoutToken(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OperatorToken = "" })
	expectErr(t, e.do("GET", "/api/v1/operator/teams", nil, "Authorization", "Bearer "), 401, "authentication_required", "")
	expectErr(t, e.do("GET", "/api/v1/operator/teams", nil, "Authorization", "Bearer anything"), 401, "authentication_required", "")
}

// TestOperatorTeamsConcurrentSameName: without a process-wide lock around
// team creation, the store's transaction still lets exactly one of many
// concurrent creates of a name through; the others answer 409 and leave
// no team, managed account or key behind.
func TestOperatorTeamsConcurrentSameName(t *testing.T) {
	e := newEnv(t)
	op := []string{"Authorization", "Bearer " + testOperatorToken}
	codes := make(chan int, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- e.do("POST", "/api/v1/operator/teams", map[string]any{"name": "acme"}, op...).Code
		}()
	}
	wg.Wait()
	close(codes)
	created := 0
	for c := range codes {
		switch c {
		case 201:
			created++
		case 409:
		default:
			t.Fatalf("create answered %d", c)
		}
	}
	if created != 1 {
		t.Fatalf("%d creates of one name succeeded", created)
	}
	teams, err := e.st.Teams()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tm := range teams {
		if tm.Name == "acme" {
			n++
			if ps, err := e.st.Providers(tm.ID); err != nil || len(ps) != 1 || !ps[0].Managed {
				t.Fatalf("acme's providers: %v %v", ps, err)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d teams named acme", n)
	}
}
