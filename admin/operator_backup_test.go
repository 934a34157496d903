package admin

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/store"
)

// TestOperatorBackupRoute: the backup is an operator route of the table,
// so it gets what every operator route gets — the token check, a request
// ID, the operator rate limit and JSON 405s — and streams a store file
// that opens, with the team in it.
func TestOperatorBackupRoute(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HTTP.RateLimit = 2 })
	get := func(method, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/api/v1/operator/backup", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		return rec
	}

	if r := get("GET", "wrong-token-0123456789"); r.Code != 401 || r.Header().Get("X-Request-Id") == "" ||
		!strings.Contains(r.Body.String(), `"authentication_required"`) {
		t.Fatalf("wrong token: %d %q %s", r.Code, r.Header().Get("X-Request-Id"), r.Body)
	}

	r := get("GET", testOperatorToken)
	if r.Code != 200 || r.Header().Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(r.Header().Get("Content-Disposition"), `attachment; filename="smtpmux-`) {
		t.Fatalf("backup: %d %v", r.Code, r.Header())
	}
	if !strings.HasPrefix(r.Header().Get("X-Request-Id"), store.PrefixRequest) || r.Header().Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("backup did not go through the API's middleware: %v", r.Header())
	}
	file := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(file, r.Body.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := store.CheckFile(file); err != nil {
		t.Fatalf("backup is not a usable store: %v", err)
	}
	snap, err := store.Open(file, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if _, err := snap.Team(e.team.ID); err != nil {
		t.Fatalf("the team is not in the backup: %v", err)
	}

	// Another method is the API's JSON 405, not a plain-text one.
	if r := get("POST", testOperatorToken); r.Code != 405 || !strings.Contains(r.Body.String(), `"method_not_allowed"`) {
		t.Fatalf("POST: %d %s", r.Code, r.Body)
	}
	// The operator rate limit (2 per window here) counts the backup.
	if r := get("GET", testOperatorToken); r.Code != 200 {
		t.Fatalf("second backup in the window: %d", r.Code)
	}
	if r := get("GET", testOperatorToken); r.Code != 429 {
		t.Fatalf("third operator request in the window: %d, want 429", r.Code)
	}
}
