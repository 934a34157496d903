package admin

import (
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// addMessage stores a message of teamID created at `at` whose recipients
// have the given statuses and providers (pairs "status", "provider id"),
// attempted last through lastAttempt ("" for none).
func (e *testEnv) addMessage(teamID string, at time.Time, resultAt time.Time, lastAttempt string, rcpts ...string) {
	e.t.Helper()
	m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: teamID, From: "a@example.com",
		Status: state.MessagePending, CreatedAt: at, UpdatedAt: resultAt, NextAttemptAt: at}
	for i := 0; i+1 < len(rcpts); i += 2 {
		ra := resultAt
		m.Recipients = append(m.Recipients, store.Recipient{Address: "r@example.com", Status: state.Message(rcpts[i]), ProviderID: rcpts[i+1], UpdatedAt: &ra})
	}
	if lastAttempt != "" {
		m.Attempts = []store.Attempt{{N: 1, ProviderID: "dprov_older", StartedAt: at}, {N: 2, ProviderID: lastAttempt, StartedAt: at}}
	}
	if err := e.st.Enqueue(m, []byte("x")); err != nil {
		e.t.Fatal(err)
	}
}

func TestProviderUsage(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now() // 2026-03-01 12:00 UTC
	a := e.createProvider(validSMTP())
	b := e.createProvider(validSMTP())
	m := e.managed.ID
	today, yesterday := now.Add(-time.Hour), now.Add(-20*time.Hour)
	_, otherKey, _ := e.provision("other")

	// Sent today: two recipients via a, one via the managed account.
	e.addMessage(e.team.ID, today, today, "", string(state.MessageSent), a, string(state.MessageSent), a, string(state.MessageRejected), a)
	e.addMessage(e.team.ID, today, today, "", string(state.MessageSent), m)
	// Created yesterday, sent yesterday: 7d but not today.
	e.addMessage(e.team.ID, yesterday, yesterday, "", string(state.MessageSent), a, string(state.MessageFailed), a)
	// Created yesterday, sent today after retries: counts today.
	e.addMessage(e.team.ID, yesterday, today, "", string(state.MessageSent), b)
	// Pending after a deferral: attributed to the latest attempt's provider.
	e.addMessage(e.team.ID, today, today, b, string(state.MessagePending), "", string(state.MessageFailed), "")
	// Never attempted: nobody's.
	e.addMessage(e.team.ID, today, today, "", string(state.MessagePending), "")
	// Too old, another team, a deleted provider: not counted.
	e.addMessage(e.team.ID, now.Add(-8*24*time.Hour), today, "", string(state.MessageSent), a)
	e.addMessage(otherKey.TeamID, today, today, "", string(state.MessageSent), a)
	e.addMessage(e.team.ID, today, today, "", string(state.MessageSent), "dprov_000000000000000000000000")

	r := e.do("GET", "/api/v1/providers/usage", nil)
	if r.Code != 200 || r.str("data.window_start") != "2026-02-22T12:00:00Z" || r.str("data.day_start") != "2026-03-01T00:00:00Z" {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	got := map[string]map[string]any{}
	for _, it := range r.get("data.providers").([]any) {
		row := it.(map[string]any)
		got[row["provider_id"].(string)] = row
	}
	want := map[string]map[string]float64{
		a: {"sent_today": 2, "sent_7d": 3, "failed_7d": 1, "rejected_7d": 1, "pending_7d": 0, "total_7d": 5},
		b: {"sent_today": 1, "sent_7d": 1, "failed_7d": 1, "rejected_7d": 0, "pending_7d": 1, "total_7d": 3},
		m: {"sent_today": 1, "sent_7d": 1, "failed_7d": 0, "rejected_7d": 0, "pending_7d": 0, "total_7d": 1},
	}
	if len(got) != 3 {
		t.Fatalf("providers: %s", r.Body)
	}
	for id, fields := range want {
		for f, v := range fields {
			if got[id][f] != v {
				t.Errorf("%s %s = %v, want %v", id, f, got[id][f], v)
			}
		}
	}
	// A team without mail gets zero lines for each of its providers.
	_, _, otherRoot := e.provision("empty")
	r = e.do("GET", "/api/v1/providers/usage", nil, "Authorization", "Bearer "+otherRoot)
	if rows := r.get("data.providers").([]any); len(rows) != 1 || rows[0].(map[string]any)["total_7d"] != 0.0 {
		t.Fatalf("empty team: %s", r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/providers/usage", nil, "Authorization", "Bearer "+e.addKey(e.team.ID, store.KeyRoot, "group.*")), 403, "insufficient_permissions", "")
	expectErr(t, e.do("POST", "/api/v1/providers/usage", nil), 405, "method_not_allowed", "")
	expectErr(t, e.do("PATCH", "/api/v1/providers/usage", map[string]any{}), 405, "method_not_allowed", "")
}

func TestProviderStats(t *testing.T) {
	e := newEnv(t)
	a := e.createProvider(validSMTP())
	e.createProvider(validSMTP())
	if r := e.do("POST", "/api/v1/providers/"+a+"/deactivate", nil); r.Code != 200 {
		t.Fatal(r.Body)
	}
	r := e.do("GET", "/api/v1/providers/stats", nil)
	want := map[string]float64{
		"data.total": 3, "data.active": 2, "data.inactive": 1, "data.error": 0, "data.pending": 0,
		"data.by_status.active": 2, "data.by_status.inactive": 1, "data.by_status.error": 0, "data.by_status.pending": 0,
		"data.by_type.smtp": 2, "data.by_type.amazon_ses": 1, "data.by_type.gmail_api": 0,
		"data.by_type.outlook_api": 0, "data.by_type.ses": 0,
	}
	if r.Code != 200 {
		t.Fatal(r.Body)
	}
	for p, v := range want {
		if r.get(p) != v {
			t.Errorf("%s = %v, want %v", p, r.get(p), v)
		}
	}
}

func TestProviderLimits(t *testing.T) {
	live := map[string]ManagedCounts{}
	e := newEnv(t, func(o *Options) {
		o.Providers.Limit = 5
		o.Managed.DailyLimit = 10
		o.Managed.Usage = func(id string) (ManagedCounts, bool) { u, ok := live[id]; return u, ok }
	})
	for i := 0; i < 3; i++ {
		e.createProvider(validSMTP())
	}
	r := e.do("GET", "/api/v1/providers/limits", nil)
	check := func(r *resp, want map[string]any) {
		t.Helper()
		if r.Code != 200 {
			t.Fatal(r.Body)
		}
		for p, v := range want {
			if r.get(p) != v {
				t.Errorf("%s = %#v, want %#v", p, r.get(p), v)
			}
		}
	}
	check(r, map[string]any{
		"data.sending_accounts.resource_type": "sending_accounts",
		"data.sending_accounts.usage":         3.0, "data.sending_accounts.max_allowed": 5.0,
		"data.sending_accounts.usage_ratio": 0.6, "data.sending_accounts.threshold_usage": 4.0,
		"data.sending_accounts.is_near_limit": false, "data.sending_accounts.is_at_limit": false,
		"data.sending_accounts.can_request_increase": false, "data.sending_accounts.pending_request_id": nil,
		// No live count for the managed account yet and no mail: 0.
		"data.shared_amazon_ses.provider_id": e.managed.ID, "data.shared_amazon_ses.usage": 0.0,
		"data.shared_amazon_ses.max_allowed": 10.0, "data.shared_amazon_ses.daily_limit": 10.0,
		"data.shared_amazon_ses.usage_ratio": 0.0, "data.shared_amazon_ses.is_near_limit": false,
		"data.shared_amazon_ses.pending_request_id": nil, "data.shared_amazon_ses.resets_at": "2026-03-02T00:00:00Z",
	})
	if _, ok := r.get("data.sending_accounts").(map[string]any)["pending_request_id"]; !ok {
		t.Fatal("pending_request_id missing")
	}

	// Fallback: today's recipients sent through the managed account.
	now := e.clock.Now()
	e.addMessage(e.team.ID, now.Add(-time.Hour), now.Add(-time.Hour), "", string(state.MessageSent), e.managed.ID, string(state.MessageSent), e.managed.ID)
	check(e.do("GET", "/api/v1/providers/limits", nil), map[string]any{"data.shared_amazon_ses.usage": 2.0, "data.shared_amazon_ses.sent_today": 2.0})

	// The live count wins; 80% makes it near the limit.
	e.createProvider(validSMTP())
	live[e.managed.ID] = ManagedCounts{DaySent: 8}
	check(e.do("GET", "/api/v1/providers/limits", nil), map[string]any{
		"data.sending_accounts.usage": 4.0, "data.sending_accounts.is_near_limit": true,
		"data.sending_accounts.can_request_increase": true, "data.sending_accounts.usage_ratio": 0.8,
		"data.shared_amazon_ses.usage": 8.0, "data.shared_amazon_ses.usage_ratio": 0.8,
		"data.shared_amazon_ses.is_near_limit": true, "data.shared_amazon_ses.can_request_increase": true,
		"data.shared_amazon_ses.is_at_limit": false,
	})

	// Usage is sent + reserved (accepted, still queued), in the day and in
	// the hour: 3 sent and 7 queued of 10 is at the limit, and so is an
	// hour with 1 sent and 1 queued of the default 2.
	live[e.managed.ID] = ManagedCounts{HourSent: 1, HourReserved: 1, DaySent: 3, DayReserved: 7}
	check(e.do("GET", "/api/v1/providers/limits", nil), map[string]any{
		"data.shared_amazon_ses.usage": 10.0, "data.shared_amazon_ses.reserved": 7.0,
		"data.shared_amazon_ses.sent_today": 10.0, "data.shared_amazon_ses.is_at_limit": true,
		"data.shared_amazon_ses.usage_ratio":  1.0,
		"data.shared_amazon_ses.hourly.limit": 2.0, "data.shared_amazon_ses.hourly.usage": 2.0,
		"data.shared_amazon_ses.hourly.reserved": 1.0, "data.shared_amazon_ses.hourly.is_at_limit": true,
		"data.shared_amazon_ses.hourly.resets_at": now.UTC().Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339),
	})
	live[e.managed.ID] = ManagedCounts{DaySent: 8}

	// A team override of both limits.
	daily, accounts := 400, 4
	e.team.ManagedDailyLimit, e.team.ProviderLimit = &daily, &accounts
	if err := e.st.PutTeam(e.team); err != nil {
		t.Fatal(err)
	}
	check(e.do("GET", "/api/v1/providers/limits", nil), map[string]any{
		"data.sending_accounts.max_allowed": 4.0, "data.sending_accounts.is_at_limit": true,
		"data.shared_amazon_ses.max_allowed": 400.0, "data.shared_amazon_ses.usage_ratio": 0.02,
		"data.shared_amazon_ses.is_near_limit": false,
	})
}

func TestManagedDailyLimitDefault(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/api/v1/providers/limits", nil)
	if r.get("data.shared_amazon_ses.max_allowed") != 50.0 || r.get("data.sending_accounts.max_allowed") != 200.0 ||
		r.get("data.sending_accounts.usage") != 0.0 || r.get("data.sending_accounts.threshold_usage") != 160.0 {
		t.Fatal(r.Body)
	}
}
