package admin

import "testing"

// TestFailureReportsFlag: the opt-in is off by default, settable on
// create (keys and mailboxes) and PATCH (mailboxes), shown on GET, and a
// non-boolean or a null on PATCH is a validation error.
func TestFailureReportsFlag(t *testing.T) {
	e := newEnv(t)
	k := e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k", "type": "sending"})
	if k.Code != 201 || k.get("data.failure_reports") != false {
		t.Fatalf("key default: %s", k.Body)
	}
	k = e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k2", "failure_reports": true})
	if k.Code != 201 || k.get("data.failure_reports") != true {
		t.Fatalf("key opt-in: %s", k.Body)
	}
	if g := e.do("GET", "/api/v1/api-keys/"+k.str("data.id"), nil); g.get("data.failure_reports") != true {
		t.Fatalf("key get: %s", g.Body)
	}
	expectErr(t, e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k3", "failure_reports": "yes"}), 400, "invalid_parameter", "failure_reports")
	expectErr(t, e.do("POST", "/api/v1/api-keys", map[string]any{"name": "k4", "type": "root", "failure_reports": true}), 422, "validation_error", "failure_reports")

	id := e.createMailbox(map[string]any{"address": "a@example.com"})
	path := "/api/v1/mailboxes/" + id
	if g := e.do("GET", path, nil); g.get("data.failure_reports") != false {
		t.Fatalf("mailbox default: %s", g.Body)
	}
	if p := e.do("PATCH", path, map[string]any{"failure_reports": true}); p.Code != 200 || p.get("data.failure_reports") != true {
		t.Fatalf("mailbox patch: %d %s", p.Code, p.Body)
	}
	if g := e.do("GET", path, nil); g.get("data.failure_reports") != true {
		t.Fatalf("mailbox get: %s", g.Body)
	}
	expectErr(t, e.do("PATCH", path, map[string]any{"failure_reports": nil}), 422, "validation_error", "failure_reports")
	expectErr(t, e.do("PATCH", path, map[string]any{"failure_reports": 1}), 400, "invalid_parameter", "failure_reports")
	m := e.do("POST", "/api/v1/mailboxes", map[string]any{"address": "b@example.com", "failure_reports": true})
	if m.Code != 201 || m.get("data.failure_reports") != true {
		t.Fatalf("mailbox create opt-in: %s", m.Body)
	}
}
