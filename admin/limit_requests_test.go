package admin

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

const sharedReqPath = "/api/v1/providers/shared-amazon-ses-limit-request"
const accountsReqPath = "/api/v1/providers/limits/sending-accounts/request-increase"

// liveUsage is a concurrency-safe Options.Managed.Usage.
type liveUsage struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *liveUsage) set(id string, n int) { l.mu.Lock(); defer l.mu.Unlock(); l.n[id] = n }
func (l *liveUsage) get(id string) (ManagedCounts, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.n[id]
	return ManagedCounts{DaySent: n}, ok
}

// newLimitEnv is a test env whose managed account has a daily limit of
// 100 and whose live usage the test sets.
func newLimitEnv(t *testing.T, mods ...func(*Options)) (*testEnv, *liveUsage) {
	live := &liveUsage{n: map[string]int{}}
	e := newEnv(t, append([]func(*Options){func(o *Options) {
		o.Managed.DailyLimit = 100
		o.Managed.Usage = live.get
	}}, mods...)...)
	return e, live
}

func TestThresholdArithmetic(t *testing.T) {
	for _, c := range []struct {
		used, max, threshold int
		near                 bool
	}{
		{79, 100, 80, false}, {80, 100, 80, true}, {3, 5, 4, false}, {4, 5, 4, true},
		{39, 50, 40, false}, {40, 50, 40, true}, {799_999, 1_000_000, 800_000, false},
		{799_990, 999_987, 799_990, true}, {799_989, 999_987, 799_990, false},
		{0, 0, 0, true}, {0, 1, 1, false}, {1, 1, 1, true},
	} {
		if got := nearLimit(c.used, c.max); got != c.near {
			t.Errorf("nearLimit(%d, %d) = %v", c.used, c.max, got)
		}
		if got := thresholdUsage(c.max); got != c.threshold {
			t.Errorf("thresholdUsage(%d) = %d, want %d", c.max, got, c.threshold)
		}
	}
}

func TestSharedSESLimitRequest(t *testing.T) {
	e, live := newLimitEnv(t)

	// 79% of the daily limit: too early.
	live.set(e.managed.ID, 79)
	r := e.do("POST", sharedReqPath, nil)
	expectErr(t, r, 422, "validation_error", "")
	if !strings.Contains(r.str("error.message"), "79 of 100") {
		t.Fatalf("message should show the figures: %s", r.Body)
	}
	if l := e.do("GET", "/api/v1/providers/limits", nil); l.get("data.shared_amazon_ses.can_request_increase") != false {
		t.Fatalf("limits at 79%%: %s", l.Body)
	}

	// Bad bodies are refused before the threshold matters.
	live.set(e.managed.ID, 80)
	expectErr(t, e.do("POST", sharedReqPath, "{not json"), 400, "invalid_parameter", "")
	expectErr(t, e.do("POST", sharedReqPath, `[]`), 400, "invalid_parameter", "")
	expectErr(t, e.do("POST", sharedReqPath, map[string]any{"reason": 5}), 400, "invalid_parameter", "reason")
	expectErr(t, e.do("POST", sharedReqPath, map[string]any{"daily_limit": 500}), 400, "invalid_parameter", "daily_limit")
	expectErr(t, e.do("POST", sharedReqPath, map[string]any{"reason": strings.Repeat("é", 1001)}), 422, "validation_error", "reason")
	expectErr(t, e.do("POST", sharedReqPath, map[string]any{"reason": "bell\a"}), 422, "validation_error", "reason")

	// 80%: filed, with the figures it was filed at.
	reason := strings.Repeat("é", 998) + "\n!"
	r = e.do("POST", sharedReqPath, map[string]any{"reason": "  " + reason + " "})
	if r.Code != http.StatusCreated || r.str("data.status") != "pending" || r.str("data.type") != "shared_amazon_ses" ||
		r.str("data.reason") != reason || r.get("data.usage") != 80.0 || r.get("data.current_limit") != 100.0 ||
		r.get("data.daily_limit") != nil || r.get("data.decided_at") != nil || r.get("data.decided_by") != nil ||
		r.str("data.requested_at") != "2026-03-01T12:00:00Z" || r.get("data.team_id") != nil {
		t.Fatalf("create: %d %s", r.Code, r.Body)
	}
	first := r.str("data.id")
	if !store.ValidID(store.PrefixLimitRequest, first) {
		t.Fatalf("id %q", first)
	}

	// One pending per team, whatever the usage.
	r = e.do("POST", sharedReqPath, map[string]any{})
	expectErr(t, r, 409, "conflict", "")
	if !strings.Contains(r.str("error.message"), first) {
		t.Fatalf("409 should name the pending request: %s", r.Body)
	}
	live.set(e.managed.ID, 10)
	expectErr(t, e.do("POST", sharedReqPath, nil), 409, "conflict", "")

	// The limits snapshot shows it; the other snapshot is unaffected.
	l := e.do("GET", "/api/v1/providers/limits", nil)
	if l.str("data.shared_amazon_ses.pending_request_id") != first || l.get("data.shared_amazon_ses.can_request_increase") != false ||
		l.get("data.sending_accounts.pending_request_id") != nil {
		t.Fatalf("limits: %s", l.Body)
	}

	// Another team sees nothing of it and cannot cancel it.
	_, _, other := e.provision("other")
	o := e.do("GET", sharedReqPath, nil, "Authorization", "Bearer "+other)
	if o.Code != 200 || len(o.get("data").([]any)) != 0 {
		t.Fatalf("other team's list: %s", o.Body)
	}
	expectErr(t, e.do("DELETE", sharedReqPath+"/"+first, nil, "Authorization", "Bearer "+other), 404, "not_found", "")

	// Cancel: 200 with the cancelled request; then 409; bad IDs 404.
	e.clock.Advance(time.Minute)
	r = e.do("DELETE", sharedReqPath+"/"+first, nil)
	if r.Code != 200 || r.str("data.status") != "cancelled" || r.str("data.decided_by") != "team" ||
		r.str("data.decided_at") != "2026-03-01T12:01:00Z" {
		t.Fatalf("cancel: %d %s", r.Code, r.Body)
	}
	expectErr(t, e.do("DELETE", sharedReqPath+"/"+first, nil), 409, "conflict", "")
	expectErr(t, e.do("DELETE", sharedReqPath+"/trir_000000000000000000000000", nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", sharedReqPath+"/nope", nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", "/api/v1/providers/"+e.managed.ID+"/"+first, nil), 404, "not_found", "")
	if l := e.do("GET", "/api/v1/providers/limits", nil); l.get("data.shared_amazon_ses.pending_request_id") != nil {
		t.Fatalf("pending after cancel: %s", l.Body)
	}

	// A new one may be filed (empty body); the list is newest first.
	live.set(e.managed.ID, 100)
	r = e.do("POST", sharedReqPath, "")
	if r.Code != 201 || r.get("data.reason") != nil {
		t.Fatalf("second: %d %s", r.Code, r.Body)
	}
	second := r.str("data.id")
	r = e.do("GET", sharedReqPath, nil)
	if r.Code != 200 || r.str("data.0.id") != second || r.str("data.1.id") != first || r.str("data.1.status") != "cancelled" ||
		r.get("pagination.has_more") != false {
		t.Fatalf("list: %s", r.Body)
	}
	r = e.do("GET", sharedReqPath+"?limit=1", nil)
	if len(r.get("data").([]any)) != 1 || r.get("pagination.has_more") != true {
		t.Fatalf("page 1: %s", r.Body)
	}
	r = e.do("GET", sharedReqPath+"?limit=1&cursor="+r.str("pagination.next_cursor"), nil)
	if r.str("data.0.id") != first || r.get("pagination.has_more") != false {
		t.Fatalf("page 2: %s", r.Body)
	}
	expectErr(t, e.do("GET", sharedReqPath+"?limit=0", nil), 400, "invalid_parameter", "limit")

	// Permissions and methods.
	readOnly := e.addKey(e.team.ID, store.KeyRoot, "provider.read")
	if r := e.do("GET", sharedReqPath, nil, "Authorization", "Bearer "+readOnly); r.Code != 200 {
		t.Fatalf("read-only list: %s", r.Body)
	}
	expectErr(t, e.do("POST", sharedReqPath, nil, "Authorization", "Bearer "+readOnly), 403, "insufficient_permissions", "")
	expectErr(t, e.do("DELETE", sharedReqPath+"/"+second, nil, "Authorization", "Bearer "+readOnly), 403, "insufficient_permissions", "")
	expectErr(t, e.do("GET", sharedReqPath, nil, "Authorization", ""), 401, "authentication_required", "")
	expectErr(t, e.do("PATCH", sharedReqPath, map[string]any{}), 405, "method_not_allowed", "")
	expectErr(t, e.do("DELETE", sharedReqPath, nil), 405, "method_not_allowed", "")
	// The 405s that would conflict with DELETE …/{request_id} (see
	// handleUnlessConflict) are JSON 404s; the others stay.
	expectErr(t, e.do("DELETE", "/api/v1/providers/"+e.managed.ID+"/activate", nil), 404, "not_found", "")
	expectErr(t, e.do("POST", sharedReqPath+"/"+second, nil), 404, "not_found", "")
	expectErr(t, e.do("GET", "/api/v1/providers/"+e.managed.ID+"/activate", nil), 405, "method_not_allowed", "")
	// The provider routes next to it still work.
	if r := e.do("GET", "/api/v1/providers/"+e.managed.ID, nil); r.Code != 200 {
		t.Fatalf("provider get: %s", r.Body)
	}
}

func TestSharedSESLimitRequestFallbackUsage(t *testing.T) {
	// Without a live count the usage is the message log's sent_today,
	// as in GET /providers/limits.
	e := newEnv(t, func(o *Options) { o.Managed.DailyLimit = 5 })
	now := e.clock.Now()
	e.addMessage(e.team.ID, now.Add(-time.Hour), now.Add(-time.Hour), "", string(state.MessageSent), e.managed.ID, string(state.MessageSent), e.managed.ID, string(state.MessageSent), e.managed.ID)
	expectErr(t, e.do("POST", sharedReqPath, nil), 422, "validation_error", "")
	e.addMessage(e.team.ID, now.Add(-time.Hour), now.Add(-time.Hour), "", string(state.MessageSent), e.managed.ID)
	if r := e.do("POST", sharedReqPath, nil); r.Code != 201 || r.get("data.usage") != 4.0 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
}

func TestSharedSESLimitRequestConcurrent(t *testing.T) {
	e, live := newLimitEnv(t)
	live.set(e.managed.ID, 90)
	var wg sync.WaitGroup
	codes := make([]int, 12)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = e.do("POST", sharedReqPath, nil).Code
		}()
	}
	wg.Wait()
	created := 0
	for _, c := range codes {
		switch c {
		case 201:
			created++
		case 409:
		default:
			t.Fatalf("codes %v", codes)
		}
	}
	if created != 1 {
		t.Fatalf("codes %v: want exactly one 201", codes)
	}
}

func TestSendingAccountsRequestIncrease(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 5 })
	for i := 0; i < 3; i++ {
		e.createProvider(validSMTP())
	}
	// 60%: too early.
	expectErr(t, e.do("POST", accountsReqPath, nil), 422, "validation_error", "")
	e.createProvider(validSMTP())

	// 80%: bad bodies first.
	expectErr(t, e.do("POST", accountsReqPath, map[string]any{"requested_limit": "ten"}), 400, "invalid_parameter", "requested_limit")
	expectErr(t, e.do("POST", accountsReqPath, map[string]any{"requested_limit": 2.5}), 400, "invalid_parameter", "requested_limit")
	expectErr(t, e.do("POST", accountsReqPath, map[string]any{"requested": 10}), 400, "invalid_parameter", "requested")
	expectErr(t, e.do("POST", accountsReqPath, map[string]any{"requested_limit": 5}), 422, "validation_error", "requested_limit")
	expectErr(t, e.do("POST", accountsReqPath, map[string]any{"requested_limit": 1_000_001}), 422, "validation_error", "requested_limit")
	expectErr(t, e.do("POST", accountsReqPath, map[string]any{"reason": strings.Repeat("x", 1001)}), 422, "validation_error", "reason")

	r := e.do("POST", accountsReqPath, map[string]any{"reason": "more brands", "requested_limit": 20})
	if r.Code != 201 || r.str("data.type") != "sending_accounts" || r.str("data.status") != "pending" ||
		r.get("data.requested_limit") != 20.0 || r.get("data.usage") != 4.0 || r.get("data.current_limit") != 5.0 ||
		r.get("data.provider_limit") != nil || r.str("data.reason") != "more brands" {
		t.Fatalf("create: %d %s", r.Code, r.Body)
	}
	id := r.str("data.id")
	expectErr(t, e.do("POST", accountsReqPath, nil), 409, "conflict", "")

	l := e.do("GET", "/api/v1/providers/limits", nil)
	if l.str("data.sending_accounts.pending_request_id") != id || l.get("data.sending_accounts.can_request_increase") != false ||
		l.get("data.sending_accounts.is_near_limit") != true || l.get("data.shared_amazon_ses.pending_request_id") != nil {
		t.Fatalf("limits: %s", l.Body)
	}
	// It is not a shared-SES request: not in that list, not cancellable there.
	if r := e.do("GET", sharedReqPath, nil); len(r.get("data").([]any)) != 0 {
		t.Fatalf("shared list: %s", r.Body)
	}
	expectErr(t, e.do("DELETE", sharedReqPath+"/"+id, nil), 404, "not_found", "")

	// The old limit still holds until the operator approves.
	e.createProvider(validSMTP())
	expectErr(t, e.do("POST", "/api/v1/providers", validSMTP()), 409, "limit_exceeded", "")

	readOnly := e.addKey(e.team.ID, store.KeyRoot, "provider.read")
	expectErr(t, e.do("POST", accountsReqPath, nil, "Authorization", "Bearer "+readOnly), 403, "insufficient_permissions", "")
	expectErr(t, e.do("GET", accountsReqPath, nil), 405, "method_not_allowed", "")
}
