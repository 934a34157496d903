package admin

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

const opLimitPath = "/api/v1/operator/limit-requests"

var opAuth = []string{"Authorization", "Bearer " + testOperatorToken}

// decisions records Options.Hooks.OnLimitDecided calls.
type decisions struct {
	mu  sync.Mutex
	got []string
}

func (d *decisions) hook(teamID, requestID, decision string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, teamID+" "+requestID+" "+decision)
}

func (d *decisions) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

func TestOperatorLimitRequestAuth(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path string }{
		{"GET", opLimitPath},
		{"GET", opLimitPath + "/trir_000000000000000000000000"},
		{"POST", opLimitPath + "/trir_000000000000000000000000/approve"},
		{"POST", opLimitPath + "/trir_000000000000000000000000/deny"},
	} {
		// No credentials, the team's root key, a wrong token: all 401.
		expectErr(t, e.do(c.method, c.path, map[string]any{}, "Authorization", ""), 401, "authentication_required", "")
		expectErr(t, e.do(c.method, c.path, map[string]any{}), 401, "authentication_required", "")
		expectErr(t, e.do(c.method, c.path, map[string]any{}, "Authorization", "Bearer "+testOperatorToken+"x"), 401, "authentication_required", "")
	}
	expectErr(t, e.do("GET", opLimitPath+"/trir_000000000000000000000000", nil, opAuth...), 404, "not_found", "")
	expectErr(t, e.do("POST", opLimitPath+"/nope/approve", map[string]any{"daily_limit": 5}, opAuth...), 404, "not_found", "")
	expectErr(t, e.do("POST", opLimitPath+"/trir_000000000000000000000000/deny", nil, opAuth...), 404, "not_found", "")
	expectErr(t, e.do("DELETE", opLimitPath, nil, opAuth...), 405, "method_not_allowed", "")
	expectErr(t, e.do("GET", opLimitPath+"/trir_000000000000000000000000/approve", nil, opAuth...), 405, "method_not_allowed", "")
}

func TestOperatorApproveSharedSES(t *testing.T) {
	dec := &decisions{}
	e, live := newLimitEnv(t, func(o *Options) { o.Hooks.OnLimitDecided = dec.hook })
	live.set(e.managed.ID, 85)
	id := e.do("POST", sharedReqPath, map[string]any{"reason": "launch"}).str("data.id")
	if id == "" {
		t.Fatal("no request")
	}

	// The operator's queue shows it with its team.
	r := e.do("GET", opLimitPath+"?status=pending", nil, opAuth...)
	if r.Code != 200 || r.str("data.0.id") != id || r.str("data.0.team_id") != e.team.ID || r.str("data.0.reason") != "launch" ||
		r.get("data.0.usage") != 85.0 || r.get("data.0.current_limit") != 100.0 {
		t.Fatalf("queue: %s", r.Body)
	}
	if r := e.do("GET", opLimitPath+"/"+id, nil, opAuth...); r.Code != 200 || r.str("data.status") != "pending" {
		t.Fatalf("get: %s", r.Body)
	}

	// Bad approvals.
	approve := opLimitPath + "/" + id + "/approve"
	expectErr(t, e.do("POST", approve, nil, opAuth...), 400, "invalid_parameter", "")
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": "500"}, opAuth...), 400, "invalid_parameter", "daily_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": 500, "note": "x"}, opAuth...), 400, "invalid_parameter", "note")
	expectErr(t, e.do("POST", approve, map[string]any{}, opAuth...), 422, "validation_error", "daily_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"provider_limit": 500}, opAuth...), 422, "validation_error", "provider_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": 100}, opAuth...), 422, "validation_error", "daily_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": 1_000_001}, opAuth...), 422, "validation_error", "daily_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": 500, "hourly_limit": 0}, opAuth...), 422, "validation_error", "hourly_limit")
	if len(dec.list()) != 0 {
		t.Fatalf("hook called for a refused approval: %v", dec.list())
	}

	e.clock.Advance(time.Hour)
	r = e.do("POST", approve, map[string]any{"daily_limit": 1_000, "hourly_limit": 60}, opAuth...)
	if r.Code != 200 || r.str("data.status") != "approved" || r.get("data.daily_limit") != 1000.0 || r.get("data.decided_limit") != 1000.0 ||
		r.get("data.hourly_limit") != 60.0 || r.str("data.decided_by") != "operator" || r.str("data.decided_at") != "2026-03-01T13:00:00Z" {
		t.Fatalf("approve: %d %s", r.Code, r.Body)
	}
	if got := dec.list(); len(got) != 1 || got[0] != e.team.ID+" "+id+" approved" {
		t.Fatalf("hook: %v", got)
	}
	if tm, _ := e.st.Team(e.team.ID); tm.ManagedDailyLimit == nil || *tm.ManagedDailyLimit != 1000 ||
		tm.ManagedHourlyLimit == nil || *tm.ManagedHourlyLimit != 60 {
		t.Fatalf("team: %+v", tm)
	}

	// The team sees the new limit and the outcome.
	l := e.do("GET", "/api/v1/providers/limits", nil)
	if l.get("data.shared_amazon_ses.max_allowed") != 1000.0 || l.get("data.shared_amazon_ses.daily_limit") != 1000.0 ||
		l.get("data.shared_amazon_ses.pending_request_id") != nil || l.get("data.shared_amazon_ses.can_request_increase") != false {
		t.Fatalf("limits: %s", l.Body)
	}
	if r := e.do("GET", sharedReqPath, nil); r.str("data.0.status") != "approved" || r.get("data.0.daily_limit") != 1000.0 {
		t.Fatalf("team list: %s", r.Body)
	}
	// Deciding again, either way, or cancelling: 409; the hook stays quiet.
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": 2000}, opAuth...), 409, "conflict", "")
	expectErr(t, e.do("POST", opLimitPath+"/"+id+"/deny", nil, opAuth...), 409, "conflict", "")
	expectErr(t, e.do("DELETE", sharedReqPath+"/"+id, nil), 409, "conflict", "")
	if len(dec.list()) != 1 {
		t.Fatalf("hook: %v", dec.list())
	}
	// Under the new limit, 85 is far from 80%: no new request.
	expectErr(t, e.do("POST", sharedReqPath, nil), 422, "validation_error", "")
	// A later approval must exceed the approved limit, not the default.
	live.set(e.managed.ID, 900)
	id2 := e.do("POST", sharedReqPath, nil).str("data.id")
	r = e.do("POST", opLimitPath+"/"+id2+"/approve", map[string]any{"daily_limit": 1000}, opAuth...)
	expectErr(t, r, 422, "validation_error", "daily_limit")
	if !strings.Contains(r.str("error.message"), "(1000)") {
		t.Fatalf("message: %s", r.Body)
	}
}

func TestOperatorApproveSendingAccounts(t *testing.T) {
	dec := &decisions{}
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 5; o.Hooks.OnLimitDecided = dec.hook })
	for i := 0; i < 5; i++ {
		e.createProvider(validSMTP())
	}
	expectErr(t, e.do("POST", "/api/v1/providers", validSMTP()), 409, "limit_exceeded", "")
	id := e.do("POST", accountsReqPath, map[string]any{"requested_limit": 8}).str("data.id")
	approve := opLimitPath + "/" + id + "/approve"
	expectErr(t, e.do("POST", approve, map[string]any{"daily_limit": 8}, opAuth...), 422, "validation_error", "daily_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"provider_limit": 8, "hourly_limit": 8}, opAuth...), 422, "validation_error", "hourly_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"provider_limit": 5}, opAuth...), 422, "validation_error", "provider_limit")
	expectErr(t, e.do("POST", approve, map[string]any{"provider_limit": nil}, opAuth...), 422, "validation_error", "provider_limit")

	r := e.do("POST", approve, map[string]any{"provider_limit": 7}, opAuth...)
	if r.Code != 200 || r.str("data.status") != "approved" || r.get("data.provider_limit") != 7.0 || r.get("data.requested_limit") != 8.0 ||
		r.str("data.type") != "sending_accounts" {
		t.Fatalf("approve: %d %s", r.Code, r.Body)
	}
	if got := dec.list(); len(got) != 1 || got[0] != e.team.ID+" "+id+" approved" {
		t.Fatalf("hook: %v", got)
	}
	l := e.do("GET", "/api/v1/providers/limits", nil)
	if l.get("data.sending_accounts.max_allowed") != 7.0 || l.get("data.sending_accounts.pending_request_id") != nil ||
		l.get("data.sending_accounts.is_at_limit") != false {
		t.Fatalf("limits: %s", l.Body)
	}
	// Creating beyond the old limit now works, up to the new one.
	e.createProvider(validSMTP())
	e.createProvider(validSMTP())
	expectErr(t, e.do("POST", "/api/v1/providers", validSMTP()), 409, "limit_exceeded", "")
	if tm, _ := e.st.Team(e.team.ID); tm.ProviderLimit == nil || *tm.ProviderLimit != 7 || tm.ManagedDailyLimit != nil {
		t.Fatalf("team: %+v", tm)
	}
	// The operator's team list shows the override.
	if r := e.do("GET", "/api/v1/operator/teams", nil, opAuth...); r.get("data.0.provider_limit") != 7.0 {
		t.Fatalf("teams: %s", r.Body)
	}
}

func TestOperatorDeny(t *testing.T) {
	dec := &decisions{}
	e, live := newLimitEnv(t, func(o *Options) { o.Hooks.OnLimitDecided = dec.hook })
	live.set(e.managed.ID, 80)
	id := e.do("POST", sharedReqPath, nil).str("data.id")
	deny := opLimitPath + "/" + id + "/deny"
	expectErr(t, e.do("POST", deny, map[string]any{"reason": 1}, opAuth...), 400, "invalid_parameter", "reason")
	expectErr(t, e.do("POST", deny, map[string]any{"why": "x"}, opAuth...), 400, "invalid_parameter", "why")
	expectErr(t, e.do("POST", deny, "{", opAuth...), 400, "invalid_parameter", "")
	expectErr(t, e.do("POST", deny, map[string]any{"reason": strings.Repeat("x", 1001)}, opAuth...), 422, "validation_error", "reason")

	r := e.do("POST", deny, map[string]any{"reason": "volume looks like bulk mail"}, opAuth...)
	if r.Code != 200 || r.str("data.status") != "denied" || r.str("data.decision_reason") != "volume looks like bulk mail" ||
		r.get("data.daily_limit") != nil || r.str("data.decided_by") != "operator" {
		t.Fatalf("deny: %d %s", r.Code, r.Body)
	}
	if got := dec.list(); len(got) != 1 || got[0] != e.team.ID+" "+id+" denied" {
		t.Fatalf("hook: %v", got)
	}
	if tm, _ := e.st.Team(e.team.ID); tm.ManagedDailyLimit != nil {
		t.Fatalf("a denial changed the limit: %+v", tm)
	}
	if r := e.do("GET", sharedReqPath, nil); r.str("data.0.status") != "denied" || r.str("data.0.decision_reason") != "volume looks like bulk mail" {
		t.Fatalf("team list: %s", r.Body)
	}
	expectErr(t, e.do("POST", deny, nil, opAuth...), 409, "conflict", "")
	expectErr(t, e.do("POST", opLimitPath+"/"+id+"/approve", map[string]any{"daily_limit": 500}, opAuth...), 409, "conflict", "")
	// After a denial the team may ask again (no body needed to deny).
	id2 := e.do("POST", sharedReqPath, nil).str("data.id")
	if r := e.do("POST", opLimitPath+"/"+id2+"/deny", nil, opAuth...); r.Code != 200 || r.get("data.decision_reason") != nil {
		t.Fatalf("deny without body: %s", r.Body)
	}
	// A cancelled request cannot be decided.
	id3 := e.do("POST", sharedReqPath, nil).str("data.id")
	e.do("DELETE", sharedReqPath+"/"+id3, nil)
	expectErr(t, e.do("POST", opLimitPath+"/"+id3+"/deny", nil, opAuth...), 409, "conflict", "")
	if len(dec.list()) != 2 {
		t.Fatalf("hook: %v", dec.list())
	}
}

func TestOperatorLimitRequestList(t *testing.T) {
	e, live := newLimitEnv(t, func(o *Options) { o.Providers.Limit = 1 })
	_, bKey, bRoot := e.provision("b")
	live.set(e.managed.ID, 100)
	ps, _ := e.st.Providers(bKey.TeamID)
	live.set(ps[0].ID, 100)
	e.createProvider(validSMTP()) // team a at its provider limit

	a1 := e.do("POST", sharedReqPath, nil).str("data.id")
	e.clock.Advance(time.Second)
	b1 := e.do("POST", sharedReqPath, nil, "Authorization", "Bearer "+bRoot).str("data.id")
	a2 := e.do("POST", accountsReqPath, nil).str("data.id")
	if a1 == "" || b1 == "" || a2 == "" {
		t.Fatal("requests not created")
	}
	e.do("POST", opLimitPath+"/"+b1+"/deny", nil, opAuth...)

	ids := func(r *resp) string {
		var out []string
		for _, it := range r.get("data").([]any) {
			out = append(out, it.(map[string]any)["id"].(string))
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"":                                       a2 + "," + b1 + "," + a1,
		"?status=pending":                        a2 + "," + a1,
		"?status=denied":                         b1,
		"?status=approved":                       "",
		"?type=sending_accounts":                 a2,
		"?type=shared_amazon_ses":                b1 + "," + a1,
		"?team_id=" + e.team.ID:                  a2 + "," + a1,
		"?team_id=" + bKey.TeamID:                b1,
		"?team_id=team_000000000000000000000000": "",
		"?team_id=" + e.team.ID + "&type=shared_amazon_ses&status=pending": a1,
	} {
		r := e.do("GET", opLimitPath+q, nil, opAuth...)
		if r.Code != 200 || ids(r) != want {
			t.Errorf("%q: got %s, want %s (%s)", q, ids(r), want, r.Body)
		}
	}
	r := e.do("GET", opLimitPath+"?limit=2", nil, opAuth...)
	if ids(r) != a2+","+b1 || r.get("pagination.has_more") != true {
		t.Fatalf("page 1: %s", r.Body)
	}
	r = e.do("GET", opLimitPath+"?limit=2&cursor="+r.str("pagination.next_cursor"), nil, opAuth...)
	if ids(r) != a1 || r.get("pagination.has_more") != false || r.get("pagination.next_cursor") != nil {
		t.Fatalf("page 2: %s", r.Body)
	}
	for _, q := range []string{"?status=open", "?type=ses", "?team_id=acme", "?limit=101", "?cursor=%25"} {
		r := e.do("GET", opLimitPath+q, nil, opAuth...)
		if r.Code != 400 || r.str("error.code") != "invalid_parameter" {
			t.Errorf("%s: %d %s", q, r.Code, r.Body)
		}
	}
	// Each team's own list holds only its own shared-SES requests.
	if r := e.do("GET", sharedReqPath, nil); ids(r) != a1 {
		t.Fatalf("team a: %s", r.Body)
	}
	if r := e.do("GET", sharedReqPath, nil, "Authorization", "Bearer "+bRoot); ids(r) != b1 {
		t.Fatalf("team b: %s", r.Body)
	}
}

func TestOperatorApproveConcurrentWithCancel(t *testing.T) {
	// An approval and a cancellation racing: exactly one wins, and the
	// limit changes only if the approval did.
	for i := 0; i < 5; i++ {
		e, live := newLimitEnv(t)
		live.set(e.managed.ID, 80)
		id := e.do("POST", sharedReqPath, nil).str("data.id")
		var wg sync.WaitGroup
		var approve, cancel *resp
		wg.Add(2)
		go func() {
			defer wg.Done()
			approve = e.do("POST", opLimitPath+"/"+id+"/approve", map[string]any{"daily_limit": 300}, opAuth...)
		}()
		go func() { defer wg.Done(); cancel = e.do("DELETE", sharedReqPath+"/"+id, nil) }()
		wg.Wait()
		if (approve.Code == 200) == (cancel.Code == 200) {
			t.Fatalf("approve %d, cancel %d", approve.Code, cancel.Code)
		}
		tm, _ := e.st.Team(e.team.ID)
		if (tm.ManagedDailyLimit != nil) != (approve.Code == 200) {
			t.Fatalf("limit %v with approve %d", tm.ManagedDailyLimit, approve.Code)
		}
		r, _ := e.st.LimitRequest(id)
		if want := map[bool]string{true: store.LimitApproved, false: store.LimitCancelled}[approve.Code == 200]; r.Status != want {
			t.Fatalf("status %s, want %s", r.Status, want)
		}
	}
}
