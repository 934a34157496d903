package admin

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// logFixture stores messages of the env's team (and one of another team)
// at known times, statuses, senders and subjects.
type logFixture struct {
	ids map[string]string // label → message ID
}

func seedLog(t *testing.T, e *testEnv) *logFixture {
	t.Helper()
	other, _, _ := e.provision("other")
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f := &logFixture{ids: map[string]string{}}
	add := func(label, team string, at time.Time, status state.Message, from, to, subject, provider string) {
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: team, Source: "http", From: from,
			Subject: subject, Status: status, State: store.StateQueued, NextAttemptAt: at.Add(time.Hour),
			Recipients: []store.Recipient{{Address: to, Status: status, ProviderID: provider}},
			CreatedAt:  at, UpdatedAt: at}
		if provider != "" {
			m.Attempts = []store.Attempt{{N: 1, ProviderID: provider, StartedAt: at, Status: state.AttemptSent}}
		}
		if err := e.st.Enqueue(m, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		f.ids[label] = m.ID
	}
	add("feb28", e.team.ID, day.Add(-time.Minute), state.MessageSent, "app@example.com", "a@example.net", "Late February", e.managed.ID)
	add("mar1-early", e.team.ID, day, state.MessageSent, "app@example.com", "b@example.net", "Welcome aboard", e.managed.ID)
	add("mar1-noon", e.team.ID, day.Add(12*time.Hour), state.MessageFailed, "billing@example.com", "c@example.net", "Invoice 42", e.managed.ID)
	add("mar1-late", e.team.ID, day.Add(24*time.Hour-time.Second), state.MessageRejected, "app@example.com", "Dana@Example.net", "Password reset", "")
	add("mar2", e.team.ID, day.Add(30*time.Hour), state.MessagePending, "app@example.com", "e@example.net", "Welcome back", "")
	add("other-team", other.ID, day.Add(13*time.Hour), state.MessageSent, "app@example.com", "x@example.net", "Welcome aboard", "")
	return f
}

// logIDs lists a log page's IDs as fixture labels.
func (f *logFixture) labels(r *resp) string {
	byID := map[string]string{}
	for l, id := range f.ids {
		byID[id] = l
	}
	var out []string
	items, _ := r.get("data").([]any)
	for _, it := range items {
		out = append(out, byID[it.(map[string]any)["id"].(string)])
	}
	return strings.Join(out, ",")
}

func TestEmailLogsFilters(t *testing.T) {
	e := newEnv(t)
	f := seedLog(t, e)
	for _, tc := range []struct {
		query, want string
	}{
		{"", "mar2,mar1-late,mar1-noon,mar1-early,feb28"},
		{"status=sent", "mar1-early,feb28"},
		{"status=failed,rejected", "mar1-late,mar1-noon"},
		{"provider_id=" + e.managed.ID, "mar1-noon,mar1-early,feb28"},
		{"from_date=2026-03-01&to_date=2026-03-01", "mar1-late,mar1-noon,mar1-early"},
		{"from_date=2026-03-01T12:00:00Z", "mar2,mar1-late,mar1-noon"},
		{"to_date=2026-03-01T12:00:00Z", "mar1-noon,mar1-early,feb28"},
		{"from_date=2026-03-02", "mar2"},
		{"search=welcome", "mar2,mar1-early"},
		{"search=dana@example", "mar1-late"},
		{"search=billing@", "mar1-noon"},
		{"search=" + f.ids["feb28"][4:12], "feb28"},
		{"search=welcome&status=pending", "mar2"},
		{"search=nothing-matches", ""},
	} {
		r := e.do("GET", "/api/v1/emails/logs?"+tc.query, nil)
		if r.Code != 200 {
			t.Fatalf("%s: %d %s", tc.query, r.Code, r.Body)
		}
		if got := f.labels(r); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.query, got, tc.want)
		}
	}
	r := e.do("GET", "/api/v1/emails/logs?search=invoice", nil)
	for path, want := range map[string]any{
		"data.0.status": "failed", "data.0.from": "billing@example.com", "data.0.to.0": "c@example.net",
		"data.0.subject": "Invoice 42", "data.0.provider_id": e.managed.ID, "data.0.attempts": 1.0,
		"data.0.created_at": "2026-03-01T12:00:00Z",
	} {
		if got := r.get(path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	for _, q := range []string{"status=bounced", "provider_id=nope", "from_date=yesterday", "to_date=2026-13-01",
		"from_date=2026-03-02&to_date=2026-03-01", "limit=0", "limit=101", "cursor=!!", "search=" + strings.Repeat("s", 257)} {
		expectErr(t, e.do("GET", "/api/v1/emails/logs?"+q, nil), 400, "invalid_parameter", "")
	}
}

func TestEmailLogsPagination(t *testing.T) {
	e := newEnv(t)
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	for i := range 23 {
		at := start.Add(time.Duration(i) * time.Minute)
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID, From: "a@example.com",
			Status: state.MessageSent, State: store.StateQueued, NextAttemptAt: at,
			Recipients: []store.Recipient{{Address: fmt.Sprintf("r%d@example.net", i), Status: state.MessageSent}},
			CreatedAt:  at, UpdatedAt: at}
		if err := e.st.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		want = append([]string{m.ID}, want...)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		r := e.do("GET", "/api/v1/emails/logs?limit=5&cursor="+url.QueryEscape(cursor), nil)
		if r.Code != 200 || pages > 10 {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		for _, it := range r.get("data").([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		if r.get("pagination.has_more") != true {
			if r.get("pagination.next_cursor") != nil {
				t.Fatal("last page with a cursor")
			}
			break
		}
		cursor = r.str("pagination.next_cursor")
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages gave %d ids, want %d in newest-first order", len(got), len(want))
	}
}

func TestEmailMetrics(t *testing.T) {
	e := newEnv(t)
	seedLog(t, e)
	r := e.do("GET", "/api/v1/emails/metrics?from_date=2026-03-01&to_date=2026-03-01", nil)
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	series, _ := r.get("data.series").([]any)
	for path, want := range map[string]any{
		"data.interval": "hour", "data.from": "2026-03-01T00:00:00Z", "data.to": "2026-03-02T00:00:00Z",
		"data.totals.total": 3.0, "data.totals.sent": 1.0, "data.totals.failed": 1.0, "data.totals.rejected": 1.0,
		"data.totals.pending": 0.0,
		"data.series.0.start": "2026-03-01T00:00:00Z", "data.series.0.sent": 1.0, "data.series.0.total": 1.0,
		"data.series.12.failed": 1.0, "data.series.23.rejected": 1.0, "data.series.1.total": 0.0,
	} {
		if got := r.get(path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if len(series) != 24 {
		t.Fatalf("%d buckets", len(series))
	}
	// By day over the default window ending now (the fake clock: Mar 1
	// 12:00), restricted to a provider.
	r = e.do("GET", "/api/v1/emails/metrics?interval=day&provider_id="+e.managed.ID, nil)
	if r.Code != 200 || r.get("data.totals.total") != 2.0 || len(r.get("data.series").([]any)) != 31 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	// The default hourly window: the 24 hours before now (12:00 itself is
	// outside: windows are half-open).
	r = e.do("GET", "/api/v1/emails/metrics", nil)
	if r.Code != 200 || r.get("data.totals.total") != 2.0 || r.str("data.from") != "2026-02-28T12:00:00Z" {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	for _, q := range []string{"interval=week", "from_date=2026-01-01&to_date=2026-03-01", "status=sent", "search=x"} {
		expectErr(t, e.do("GET", "/api/v1/emails/metrics?"+q, nil), 400, "invalid_parameter", "")
	}
	// Another team sees only its own messages.
	_, _, otherRoot := e.provision("third")
	if r := e.do("GET", "/api/v1/emails/logs", nil, "Authorization", "Bearer "+otherRoot); r.Code != 200 || len(r.get("data").([]any)) != 0 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
}

// TestLogFilterStatusesOnce: a status listed again is walked once (each
// listed status is a walk of the team's log).
func TestLogFilterStatusesOnce(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/v1/emails/logs?status="+strings.Repeat("sent,failed,", 500)+"sent", nil)
	f, err := parseLogFilter(r)
	if err != nil || len(f.statuses) != 2 {
		t.Fatalf("statuses %v, err %v; want [sent failed]", f.statuses, err)
	}
}

// TestEmailLogsSearchBounded: a search looks at no more than
// searchScanMax messages per index walked for one page; a page that
// reaches the bound ends early (here often with no item) with a cursor
// below what it looked at, and paging on yields every match exactly
// once, newest first — also with two status indexes walked at once.
func TestEmailLogsSearchBounded(t *testing.T) {
	e := newEnv(t)
	saved := searchScanMax
	searchScanMax = 4
	t.Cleanup(func() { searchScanMax = saved })
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var wantAll, wantSent []string
	for i := range 40 {
		at := start.Add(time.Duration(i) * time.Minute)
		st := state.MessageSent
		if i%3 == 0 {
			st = state.MessageFailed
		}
		rcpt := fmt.Sprintf("r%d@example.net", i)
		if i%7 == 0 {
			rcpt = fmt.Sprintf("needle%d@example.net", i)
		}
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID, From: "a@example.com",
			Status: st, State: store.StateQueued, NextAttemptAt: at,
			Recipients: []store.Recipient{{Address: rcpt, Status: st}}, CreatedAt: at, UpdatedAt: at}
		if err := e.st.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			wantAll = append([]string{m.ID}, wantAll...)
			if st == state.MessageSent {
				wantSent = append([]string{m.ID}, wantSent...)
			}
		}
	}
	pageAll := func(query string) (ids []string, short int) {
		cursor := ""
		for pages := 0; ; pages++ {
			r := e.do("GET", "/api/v1/emails/logs?limit=2&"+query+"&cursor="+url.QueryEscape(cursor), nil)
			if r.Code != 200 || pages > 60 {
				t.Fatalf("%s: %d %s", query, r.Code, r.Body)
			}
			items := r.get("data").([]any)
			for _, it := range items {
				ids = append(ids, it.(map[string]any)["id"].(string))
			}
			if r.get("pagination.has_more") != true {
				return ids, short
			}
			if len(items) < 2 {
				short++
			}
			cursor = r.str("pagination.next_cursor")
		}
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"search=needle", wantAll},
		{"search=needle&status=sent,failed", wantAll},
		{"search=needle&status=sent", wantSent},
	} {
		got, short := pageAll(c.query)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: got %d ids %v, want %d %v", c.query, len(got), got, len(c.want), c.want)
		}
		if short == 0 {
			t.Errorf("%s: no page ended early at the bound", c.query)
		}
	}
}
