package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// budgeted is a real bbolt store whose records are budgeted per team, as
// cluster.Idempotency's are: refuse is the team past its budget.
type budgeted struct {
	*store.Store
	refuse  string
	charged map[string]int
}

func (b *budgeted) AdmitIdempotent(team string, now time.Time) (bool, int64, time.Duration) {
	return team != b.refuse, 64 << 20, 90 * time.Minute
}

func (b *budgeted) ChargeIdempotent(team string, now time.Time, size int) { b.charged[team] += size }

// TestIdempotencyBudgetRefuses: a team past its budget of kept records
// gets 429 limit_exceeded naming the budget, with Retry-After, and the
// request does nothing: never a silent run without protection. Other
// teams are served and their kept answers charged; error answers are
// neither kept nor charged.
func TestIdempotencyBudgetRefuses(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealer, _ := store.NewSealer("test-secret-key-0123456789")
	recs := &budgeted{Store: st, refuse: "team_full", charged: map[string]int{}}
	ix := NewIdempotency(recs, sealer, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	ran := 0
	post := func(team, key string, status int) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/v1/emails/send", strings.NewReader(`{"a":1}`))
		req.Header.Set(headerIdempotencyKey, key)
		w := httptest.NewRecorder()
		err := ix.Serve(w, req, "key_"+team, team, 1<<20, func(w http.ResponseWriter) error {
			ran++
			w.WriteHeader(status)
			io.WriteString(w, `{"ok":true}`)
			return nil
		})
		if err != nil {
			Fail(ix.log, w, req, err)
		}
		return w
	}
	w := post("team_full", "k1", 200)
	var env struct {
		Error Error `json:"error"`
	}
	json.Unmarshal(w.Body.Bytes(), &env)
	if w.Code != 429 || env.Error.Code != CodeLimitExceeded || !strings.Contains(env.Error.Message, "64 MiB") ||
		w.Header().Get("Retry-After") != "5400" || ran != 0 {
		t.Fatalf("past the budget: %d %s Retry-After=%q ran=%d", w.Code, w.Body, w.Header().Get("Retry-After"), ran)
	}
	if w := post("team_ok", "k1", 201); w.Code != 201 || ran != 1 || recs.charged["team_ok"] == 0 {
		t.Fatalf("within the budget: %d ran=%d charged=%v", w.Code, ran, recs.charged)
	}
	if w := post("team_err", "k1", 422); w.Code != 422 || recs.charged["team_err"] != 0 {
		t.Fatalf("an error answer was charged: %v", recs.charged)
	}
}
