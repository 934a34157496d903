package admin

import (
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"

	"github.com/smtpmux/smtpmux/store"
)

// reportHistory gives e's team random messages of the last 8 days (and
// another team the same): statuses, providers (one not the team's) and
// recipient results at random, some written as history, some enqueued and
// then updated so the counters move. It returns the team's messages.
func reportHistory(t *testing.T, e *testEnv) []*store.Message {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	now := e.clock.Now()
	provs := []string{e.managed.ID, store.NewID(store.PrefixProvider)}
	statuses := []state.Message{state.MessagePending, state.MessageSent, state.MessageFailed, state.MessageRejected}
	random := func(team string) *store.Message {
		at := now.Add(-time.Duration(rng.Int64N(int64(8 * 24 * time.Hour))))
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: team, From: "a@example.com",
			Status: statuses[rng.IntN(4)], CreatedAt: at, UpdatedAt: at, NextAttemptAt: at}
		if rng.IntN(3) > 0 {
			m.Attempts = []store.Attempt{{N: 1, ProviderID: provs[rng.IntN(2)], StartedAt: at}}
		}
		for j := 0; j < 1+rng.IntN(3); j++ {
			r := store.Recipient{Address: "r@example.net", Status: statuses[rng.IntN(4)]}
			if rng.IntN(2) == 0 {
				r.ProviderID = provs[rng.IntN(2)]
			}
			if rng.IntN(2) == 0 {
				done := now.Add(-time.Duration(rng.Int64N(int64(3 * 24 * time.Hour))))
				r.UpdatedAt = &done
			}
			m.Recipients = append(m.Recipients, r)
		}
		return m
	}
	var own, hist []*store.Message
	for i := 0; i < 600; i++ {
		team := e.team.ID
		if i%3 == 0 {
			team = "team_other"
		}
		m := random(team)
		if i%2 == 0 {
			hist = append(hist, m)
		} else {
			final := random(team)
			m.Status, m.Attempts, m.Recipients = state.MessagePending, nil, []store.Recipient{{Address: "r@example.net", Status: state.MessagePending}}
			if err := e.st.Enqueue(m, []byte("x")); err != nil {
				t.Fatal(err)
			}
			got, err := e.st.UpdateMessage(m.ID, func(m *store.Message) error {
				m.Status, m.Attempts, m.Recipients, m.State = final.Status, final.Attempts, final.Recipients, store.StateDone
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			m = got
		}
		if team == e.team.ID {
			own = append(own, m)
		}
	}
	// Messages a few seconds either side of the windows' ends, where the
	// answers switch from counters to messages.
	for _, d := range []time.Duration{24 * time.Hour, usageWindow, 50*time.Hour + 7*time.Minute, 3*time.Hour + 55*time.Minute, 30 * time.Minute} {
		for _, off := range []time.Duration{-10 * time.Second, 0, 10 * time.Second} {
			m := random(e.team.ID)
			m.CreatedAt = now.Add(-d + off)
			m.ID, m.UpdatedAt = store.NewIDAt(store.PrefixMessage, m.CreatedAt), m.CreatedAt
			if len(m.Attempts) == 0 || m.Recipients[0].ProviderID == "" {
				m.Recipients[0].ProviderID = e.managed.ID
			}
			hist, own = append(hist, m), append(own, m)
		}
	}
	if err := e.st.LoadHistory(hist); err != nil {
		t.Fatal(err)
	}
	return own
}

// TestReportsFromCountersMatchScan: GET /emails/metrics and GET
// /providers/usage, which read the counters kept as mail flows, answer
// exactly what counting the team's messages one by one gives (the rules
// before the counters), for windows whose ends are not on whole hours.
func TestReportsFromCountersMatchScan(t *testing.T) {
	e := newEnv(t)
	e.clock.Advance(17*time.Minute + 33*time.Second) // not on an hour
	own := reportHistory(t, e)
	now := e.clock.Now()
	for _, q := range []string{"", "interval=day", "provider_id=" + e.managed.ID,
		"from_date=" + url.QueryEscape(now.Add(-50*time.Hour-7*time.Minute).Format(time.RFC3339)) +
			"&to_date=" + url.QueryEscape(now.Add(-3*time.Hour-55*time.Minute).Format(time.RFC3339)),
		"from_date=" + url.QueryEscape(now.Add(-30*time.Minute).Format(time.RFC3339))} {
		r := e.do("GET", "/api/v1/emails/metrics?"+q, nil)
		var got struct{ Data metricsReport }
		if err := json.Unmarshal([]byte(r.Body), &got); err != nil || r.Code != 200 {
			t.Fatalf("%s: %d %s", q, r.Code, r.Body)
		}
		want := got.Data // window and buckets as answered; the counts recomputed
		from, _ := time.Parse(time.RFC3339, want.From)
		to, _ := time.Parse(time.RFC3339, want.To)
		vals, _ := url.ParseQuery(q)
		step, span := time.Hour, defaultHourlySpan
		if vals.Get("interval") == "day" {
			step, span = 24*time.Hour, defaultDailySpan
		}
		from = to.Add(-span) // the answer's From is the first bucket's start
		if f := vals.Get("from_date"); f != "" {
			from, _ = time.Parse(time.RFC3339, f)
		}
		if f := vals.Get("to_date"); f != "" {
			to, _ = time.Parse(time.RFC3339, f)
			to = to.Add(time.Nanosecond) // a timestamp to_date is inclusive
		}
		want.Totals = statusCounts{}
		for i := range want.Series {
			want.Series[i].statusCounts = statusCounts{}
		}
		first, _ := time.Parse(time.RFC3339, want.Series[0].Start)
		for _, m := range own {
			if m.CreatedAt.Before(from) || !m.CreatedAt.Before(to) {
				continue
			}
			if p := vals.Get("provider_id"); p != "" && !m.UsedProvider(p) {
				continue
			}
			want.Totals.add(string(m.Status), 1)
			want.Series[int(m.CreatedAt.Sub(first)/step)].add(string(m.Status), 1)
		}
		if want.Totals.Total == 0 {
			t.Fatalf("%s: the window holds none of the team's messages: the test proves nothing", q)
		}
		if !reflect.DeepEqual(got.Data, want) {
			t.Errorf("metrics?%s:\n got %+v\nwant %+v", q, got.Data.Totals, want.Totals)
		}
	}

	r := e.do("GET", "/api/v1/providers/usage", nil)
	var got struct {
		Data struct{ Providers []usageItem }
	}
	if err := json.Unmarshal([]byte(r.Body), &got); err != nil || r.Code != 200 {
		t.Fatalf("usage: %d %s", r.Code, r.Body)
	}
	want := usageItem{ProviderID: e.managed.ID}
	since, today := now.Add(-usageWindow), dayStart(now)
	for _, m := range own {
		if m.CreatedAt.Before(since) {
			continue
		}
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if m.ResultProvider(r) != e.managed.ID {
				continue
			}
			want.Total7d++
			switch r.Status {
			case state.MessageSent:
				want.Sent7d++
				at := m.UpdatedAt
				if r.UpdatedAt != nil {
					at = *r.UpdatedAt
				}
				if !at.Before(today) {
					want.SentToday++
				}
			case state.MessageFailed:
				want.Failed7d++
			case state.MessageRejected:
				want.Rejected7d++
			case state.MessagePending:
				want.Pending7d++
			}
		}
	}
	if len(got.Data.Providers) != 1 || got.Data.Providers[0] != want || want.SentToday == 0 {
		t.Fatalf("usage: got %+v, want %+v", got.Data.Providers, want)
	}
}

// TestLogFiltersFromIndexesMatchScan: GET /emails/logs, which walks the
// team's status and provider indexes for those filters, pages through
// exactly the messages a filter over every message of the team gives,
// newest first, for each filter and some combinations.
func TestLogFiltersFromIndexesMatchScan(t *testing.T) {
	e := newEnv(t)
	own := reportHistory(t, e)
	// Text the search must find whatever the case, and characters the
	// stored JSON escapes (the walk's pre-filter must not lose them).
	var extra []*store.Message
	for i, subj := range []string{"Order <A&B> Straße", "ÜBER Deal", "quote \"x\" back\\slash", "plain"} {
		for j := 0; j < 9; j++ {
			at := e.clock.Now().Add(-time.Duration(i*9+j+1) * time.Minute)
			extra = append(extra, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID,
				From: "Big.Sender@Example.COM", Subject: subj, Status: state.MessageSent, CreatedAt: at, UpdatedAt: at,
				Recipients: []store.Recipient{{Address: "R@Example.net", Status: state.MessageSent}}})
		}
	}
	if err := e.st.LoadHistory(extra); err != nil {
		t.Fatal(err)
	}
	own = append(own, extra...)
	slices.SortFunc(own, func(a, b *store.Message) int { return strings.Compare(b.ID, a.ID) })
	now := e.clock.Now()
	for _, q := range []string{"", "status=failed", "status=sent,rejected", "status=pending,pending",
		"provider_id=" + e.managed.ID, "provider_id=" + e.managed.ID + "&status=failed,sent",
		"status=rejected&from_date=" + url.QueryEscape(now.Add(-50*time.Hour).Format(time.RFC3339)) +
			"&to_date=" + url.QueryEscape(now.Add(-3*time.Hour).Format(time.RFC3339)),
		"search=r@example", "status=sent&search=nomatch", "search=%C3%BCber", "search=STRASSE", "search=stra%C3%9Fe",
		"search=" + url.QueryEscape("<a&b>"), "search=" + url.QueryEscape(`"x"`), "search=" + url.QueryEscape(`back\slash`),
		"search=big.SENDER@example.com"} {
		r0 := httptest.NewRequest("GET", "/x?"+q, nil)
		f, err := parseLogFilter(r0)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range own {
			if f.match(m) && (f.from.IsZero() || !m.CreatedAt.Before(f.from)) && (f.to.IsZero() || m.CreatedAt.Before(f.to)) {
				want = append(want, m.ID)
			}
		}
		if len(want) <= 7 && !strings.Contains(q, "nomatch") && !strings.Contains(q, "STRASSE") {
			t.Fatalf("logs?%s: %d matches, not enough to page through", q, len(want))
		}
		var got []string
		cursor := ""
		for pages := 0; pages < 100; pages++ {
			path := "/api/v1/emails/logs?limit=7&" + q
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := e.do("GET", path, nil)
			var body struct {
				Data       []emailLogItem
				Pagination struct {
					HasMore    bool    `json:"has_more"`
					NextCursor *string `json:"next_cursor"`
				}
			}
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil || r.Code != 200 {
				t.Fatalf("%s: %d %s", path, r.Code, r.Body)
			}
			for _, it := range body.Data {
				got = append(got, it.ID)
			}
			if !body.Pagination.HasMore {
				break
			}
			cursor = *body.Pagination.NextCursor
		}
		if !slices.Equal(got, want) {
			t.Errorf("logs?%s: %d messages, want %d", q, len(got), len(want))
		}
	}
}
