package admin

import (
	"testing"
	"time"
)

// TestManagedHoldOperator: a held managed account shows its hold, the
// team cannot activate it (409), only the operator sees held teams and
// releases them, after which the team's account is active again.
func TestManagedHoldOperator(t *testing.T) {
	e := newEnv(t)
	op := []string{"Authorization", "Bearer " + testOperatorToken}
	if held, _, err := e.st.HoldManaged(e.team.ID, e.managed.ID, "bounce rate 12 % over 24h", time.Now()); err != nil || !held {
		t.Fatalf("hold: %v %v", held, err)
	}
	r := e.do("GET", "/api/v1/providers/"+e.managed.ID, nil)
	if r.str("data.status") != "inactive" || r.str("data.held.reason") != "bounce rate 12 % over 24h" {
		t.Fatalf("held provider: %s", r.Body)
	}
	expectErr(t, e.do("POST", "/api/v1/providers/"+e.managed.ID+"/activate", nil), 409, "conflict", "")
	if r := e.do("POST", "/api/v1/providers/"+e.managed.ID+"/deactivate", nil); r.Code != 200 || r.str("data.held.reason") == "" {
		t.Fatalf("deactivate of a held account lost its hold: %s", r.Body)
	}
	// A team key cannot see or release holds.
	expectErr(t, e.do("GET", "/api/v1/operator/held-teams", nil), 401, "authentication_required", "")
	expectErr(t, e.do("POST", "/api/v1/operator/teams/"+e.team.ID+"/release-managed-account", nil), 401, "authentication_required", "")
	r = e.do("GET", "/api/v1/operator/held-teams", nil, op...)
	if r.Code != 200 || r.str("data.0.team_id") != e.team.ID || r.str("data.0.provider_id") != e.managed.ID {
		t.Fatalf("held teams: %s", r.Body)
	}
	if r := e.do("POST", "/api/v1/operator/teams/"+e.team.ID+"/release-managed-account", nil, op...); r.Code != 200 || r.get("data.released") != true {
		t.Fatalf("release: %s", r.Body)
	}
	expectErr(t, e.do("POST", "/api/v1/operator/teams/"+e.team.ID+"/release-managed-account", nil, op...), 404, "not_found", "")
	if r := e.do("GET", "/api/v1/providers/"+e.managed.ID, nil); r.str("data.status") != "active" || r.get("data.held") != nil {
		t.Fatalf("after release: %s", r.Body)
	}
	if r := e.do("GET", "/api/v1/operator/held-teams", nil, op...); len(r.get("data").([]any)) != 0 {
		t.Fatalf("held teams after release: %s", r.Body)
	}
}
