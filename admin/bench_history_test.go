package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"

	"github.com/smtpmux/smtpmux/store"
)

// benchHistory gives e's team own finished messages spread over the last
// 30 days, and other teams (ids only: their records are what matters)
// others messages in the same period, interleaved in time as on a shared
// node. Statuses are sent and failed only, so ?status=rejected matches
// nothing (a filter that matches little).
func benchHistory(b testing.TB, e *testEnv, own, otherTeams, others int) {
	b.Helper()
	now := e.clock.Now()
	teams := make([]string, otherTeams)
	for i := range teams {
		teams[i] = store.NewID(store.PrefixTeam)
	}
	batch := make([]*store.Message, 0, 10000)
	flush := func() {
		if err := e.st.LoadHistory(batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	total := own + others
	span := 30 * 24 * time.Hour
	for i := 0; i < total; i++ {
		team := e.team.ID // own messages spread evenly among the others'
		if i*own/total == (i+1)*own/total {
			team = teams[i%otherTeams]
		}
		at := now.Add(-span + span/time.Duration(total)*time.Duration(i))
		batch = append(batch, benchMessage(team, e.managed.ID, at, i))
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}

func benchMessage(team, provider string, at time.Time, i int) *store.Message {
	status := state.MessageSent
	if i%10 == 0 {
		status = state.MessageFailed
	}
	done := at.Add(time.Second)
	return &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: team, Source: "http",
		From: "sender@example.com", Subject: fmt.Sprintf("order %d", i),
		Recipients: []store.Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: status,
			Code: 250, ProviderID: provider, UpdatedAt: &done}},
		Status: status, Attempts: []store.Attempt{{N: 1, ProviderID: provider, StartedAt: at, Status: state.Attempt(status)}},
		CreatedAt: at, UpdatedAt: done, Size: 1200}
}

// BenchmarkTeamReports answers the report endpoints for one team with 10k
// and 100k messages of its own in a store that also holds 100k messages of
// 1,000 other teams (issue 18 row 3), all in their day files.
func BenchmarkTeamReports(b *testing.B) {
	for _, own := range []int{10000, 100000} {
		e := newEnv(b)
		benchHistory(b, e, own, 1000, 100000)
		// As the mover leaves it: every finished message in its day file.
		for {
			_, more, err := e.st.MoveHistory(time.Now().Add(time.Hour), 4096)
			if err != nil {
				b.Fatal(err)
			}
			if !more {
				break
			}
		}
		for _, q := range []struct{ name, path string }{
			{"logs-newest", "/api/v1/emails/logs"},
			{"logs-status-rejected", "/api/v1/emails/logs?status=rejected"},
			{"logs-status-failed", "/api/v1/emails/logs?status=failed"},
			{"logs-provider", "/api/v1/emails/logs?provider_id=" + e.managed.ID},
			{"logs-search-recipient", "/api/v1/emails/logs?search=" + url.QueryEscape("user5@")},
			{"logs-search-none", "/api/v1/emails/logs?search=nobody"},
			{"logs-window-day", "/api/v1/emails/logs?from_date=2026-02-20&to_date=2026-02-20"},
			{"metrics-24h", "/api/v1/emails/metrics"},
			{"metrics-30d-day", "/api/v1/emails/metrics?interval=day"},
			{"metrics-provider", "/api/v1/emails/metrics?provider_id=" + e.managed.ID},
			{"providers-usage", "/api/v1/providers/usage"},
			{"providers-stats", "/api/v1/providers/stats"},
		} {
			b.Run(fmt.Sprintf("own=%dk/%s", own/1000, q.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if r := e.do("GET", q.path, nil); r.Code != http.StatusOK {
						b.Fatalf("%s: %d %s", q.path, r.Code, r.Body)
					}
				}
			})
		}
	}
}
