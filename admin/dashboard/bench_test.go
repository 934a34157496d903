package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// benchEnv is a team with 200 own providers (its limit) and 100,000
// messages in its log over the last 30 days, signed in.
type benchEnv struct {
	*env
	cookie  *http.Cookie
	message string
}

func newBenchEnv(b *testing.B) *benchEnv {
	e := newEnv(b)
	be := &benchEnv{env: e}
	ids := make([]string, 0, 200)
	for i := 0; i < 200; i++ {
		code, body := e.apiDo("POST", "/api/v1/providers", e.root,
			fmt.Sprintf(`{"type":"smtp","name":"relay %d","smtp_host":"127.0.0.1","smtp_port":2525,"smtp_protocol":"none","quotas":{"per_minute":{"min":10,"max":20}}}`, i))
		if code != http.StatusCreated {
			b.Fatalf("create %d: %d %s", i, code, body)
		}
		ids = append(ids, extract(b, body, `"id":"(dprov_[^"]+)"`))
	}
	const total = 100000
	now := time.Now().UTC()
	span := 30 * 24 * time.Hour
	batch := make([]*store.Message, 0, 10000)
	for i := 0; i < total; i++ {
		at := now.Add(-span + span/total*time.Duration(i))
		status := state.MessageSent
		if i%10 == 0 {
			status = state.MessageFailed
		}
		p := ids[i%len(ids)]
		done := at.Add(time.Second)
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: e.team.ID, Source: "smtp",
			From: "sender@example.com", Subject: fmt.Sprintf("order %d", i),
			Recipients: []store.Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: status, Code: 250,
				ProviderID: p, UpdatedAt: &done}},
			Status: status, Attempts: []store.Attempt{{N: 1, ProviderID: p, StartedAt: at, Status: state.Attempt(status),
				Routing: []byte(`{"scope_type":"all","in_scope":["` + p + `"],"eligible":[{"provider_id":"` + p + `","weight":100}],"draw":3,"total_weight":100,"picked":"` + p + `"}`)}},
			CreatedAt: at, UpdatedAt: done, Size: 1200}
		batch = append(batch, m)
		if len(batch) == cap(batch) || i == total-1 {
			if err := e.st.LoadHistory(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
		be.message = m.ID
	}
	key, err := e.st.KeyBySecret(e.root)
	if err != nil {
		b.Fatal(err)
	}
	s := e.dash.sessions.create(e.root, key, false)
	be.cookie = &http.Cookie{Name: cookieName, Value: s.id}
	return be
}

// BenchmarkPages renders each page through the dashboard handler (and the
// API calls behind it) for a team of 200 providers and 100,000 messages.
// The bar is < 50 ms per page; read ns/op.
func BenchmarkPages(b *testing.B) {
	be := newBenchEnv(b)
	for _, path := range []string{"/accounts", "/logs", "/logs?status=failed", "/logs?search=user99999%40example.net",
		"/messages/" + be.message, "/overview", "/groups", "/suppressions"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest("GET", path, nil)
				req.AddCookie(be.cookie)
				w := httptest.NewRecorder()
				be.dash.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("%s: %d %s", path, w.Code, w.Body)
				}
			}
		})
	}
}
