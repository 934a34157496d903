package admin

import (
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin/sendapi"
	"github.com/smtpmux/smtpmux/internal/jobs"
	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/store"
)

func TestIdempotentSendReplaysByteForByte(t *testing.T) {
	e, fs := newSendEnv(t)
	first := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "order-1")
	if first.Code != 200 {
		t.Fatalf("%d %s", first.Code, first.Body)
	}
	again := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "order-1")
	if again.Code != 200 || again.Body != first.Body || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay %d %q vs %q", again.Code, again.Body, first.Body)
	}
	if again.Header.Get("X-Request-Id") != first.Header.Get("X-Request-Id") {
		t.Fatal("replay does not carry the original request ID")
	}
	if n := len(fs.submitted()); n != 1 {
		t.Fatalf("%d submissions, want 1", n)
	}
	// A different body under the same key is a conflict; another key or
	// another credential is a new request.
	other := validSend()
	other["subject"] = "Different"
	r := e.send("/api/v1/emails/send", other, "Idempotency-Key", "order-1")
	expectErr(t, r, 409, "idempotency_conflict", "Idempotency-Key")
	if r := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "order-2"); r.Code != 200 || r.Body == first.Body {
		t.Fatalf("new key: %d %s", r.Code, r.Body)
	}
	mbx := validSend()
	mbx["from"] = map[string]any{"email": testMailboxAddr}
	for range 2 {
		if r := e.do("POST", "/api/v1/emails/send", mbx, "Authorization", "Bearer "+testMailboxPass, "Idempotency-Key", "order-1"); r.Code != 200 {
			t.Fatalf("other credential: %d %s", r.Code, r.Body)
		}
	}
	if n := len(fs.submitted()); n != 3 {
		t.Fatalf("%d submissions, want 3", n)
	}
	// The batch endpoint is a different request even with the same key.
	expectErr(t, e.send("/api/v1/emails/send/batch", validSend(), "Idempotency-Key", "order-2"), 409, "idempotency_conflict", "")
}

// TestIdempotencyKeepsOnlySuccesses: error answers did nothing, so they
// are not kept (a retry runs again); the key stays free for the request
// once it is fixed.
func TestIdempotencyKeepsOnlySuccesses(t *testing.T) {
	e, fs := newSendEnv(t)
	bad := validSend()
	bad["subject"] = ""
	r1 := e.send("/api/v1/emails/send", bad, "Idempotency-Key", "k-invalid")
	r2 := e.send("/api/v1/emails/send", bad, "Idempotency-Key", "k-invalid")
	if r1.Code != 422 || r2.Code != 422 || r2.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("a 422 was kept: %d %s / %d replayed=%q", r1.Code, r1.Body, r2.Code, r2.Header.Get("Idempotent-Replayed"))
	}
	if n := len(fs.submitted()); n != 0 {
		t.Fatalf("%d submissions of an invalid send", n)
	}
	// A transient failure is not stored: the retry runs and succeeds.
	fs.fail = func(n int) error {
		if n == 0 {
			return senderr.ErrNoActiveProviders
		}
		return nil
	}
	expectErr(t, e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "k-transient"), 503, "no_active_providers", "")
	if r := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "k-transient"); r.Code != 200 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after 503: %d %s", r.Code, r.Body)
	}
	// Nor is a rate-limit refusal.
	fs.limited = true
	expectErr(t, e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "k-rate"), 429, "rate_limit_exceeded", "")
	fs.limited = false
	if r := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "k-rate"); r.Code != 200 {
		t.Fatalf("retry after 429: %d %s", r.Code, r.Body)
	}
}

func TestIdempotencyKeyValidation(t *testing.T) {
	e, _ := newSendEnv(t)
	expectErr(t, e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", strings.Repeat("k", 256)), 400, "invalid_parameter", "Idempotency-Key")
	expectErr(t, e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "tab\there"), 400, "invalid_parameter", "Idempotency-Key")
	expectErr(t, e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "clé"), 400, "invalid_parameter", "Idempotency-Key")
	req := httptest.NewRequest("POST", "/api/v1/emails/send", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+testSendKey)
	req.Header["Idempotency-Key"] = []string{""}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "Idempotency-Key") {
		t.Fatalf("empty key: %d %s", rec.Code, rec.Body)
	}
	if r := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", strings.Repeat("k", 255)); r.Code != 200 {
		t.Fatalf("255-character key: %d %s", r.Code, r.Body)
	}
}

func TestIdempotencyConcurrentDuplicate(t *testing.T) {
	e, fs := newSendEnv(t)
	fs.gate, fs.entered = make(chan struct{}), make(chan struct{}, 1)
	var first *resp
	var wg sync.WaitGroup
	wg.Go(func() { first = e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "dup") })
	<-fs.entered // the first request is inside Submit
	r := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "dup")
	expectErr(t, r, 409, "idempotency_conflict", "Idempotency-Key")
	if r.get("error.retryable") != true {
		t.Fatal("in-flight conflict should be retryable")
	}
	close(fs.gate)
	wg.Wait()
	if first.Code != 200 {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	fs.gate = nil
	if again := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "dup"); again.Body != first.Body {
		t.Fatalf("after the first finished: %s", again.Body)
	}
	if n := len(fs.submitted()); n != 1 {
		t.Fatalf("%d submissions", n)
	}
}

func TestIdempotencyExpiresAfter24h(t *testing.T) {
	e, fs := newSendEnv(t)
	first := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "day")
	e.clock.Advance(store.IdempotencyTTL - time.Second)
	if r := e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", "day"); r.Body != first.Body {
		t.Fatal("replay inside 24 h failed")
	}
	e.clock.Advance(time.Second)
	other := validSend()
	other["subject"] = "new day, new request"
	if r := e.send("/api/v1/emails/send", other, "Idempotency-Key", "day"); r.Code != 200 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("after expiry: %d %s", r.Code, r.Body)
	}
	if n := len(fs.submitted()); n != 2 {
		t.Fatalf("%d submissions", n)
	}
	// The sweep removes what expired (the fresh record stays).
	e.clock.Advance(store.IdempotencyTTL)
	st, err := jobs.NewSweeper(e.st, nil, e.clock.Now, 0, 0).Sweep(t.Context())
	if err != nil || st.IdempotencyKeys != 1 {
		t.Fatalf("sweep %+v %v", st, err)
	}
}

// TestIdempotencyManagementPost covers a Management POST: the replay of a
// key creation returns the same key (not a second one), and the stored
// answer holding that secret is sealed at rest.
func TestIdempotencyManagementPost(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"name": "ci", "type": "sending"}
	r1 := e.do("POST", "/api/v1/api-keys", body, "Idempotency-Key", "mk-1")
	r2 := e.do("POST", "/api/v1/api-keys", body, "Idempotency-Key", "mk-1")
	if r1.Code != 201 || r2.Body != r1.Body || r2.Header.Get("Location") != r1.Header.Get("Location") || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("%d %s / %s", r1.Code, r1.Body, r2.Body)
	}
	keys, _ := e.st.Keys(e.team.ID)
	if len(keys) != 2 { // the root key and one new key
		t.Fatalf("%d keys", len(keys))
	}
	rec, err := e.st.IdempotencyRecordOf(e.rootKey.ID, "mk-1")
	if err != nil || strings.Contains(string(rec.Body), r1.str("data.key")) || strings.Contains(string(rec.Body), "smx_mbx_") {
		t.Fatalf("stored answer not sealed: %v", err)
	}
	// GETs ignore the header.
	if r := e.do("GET", "/api/v1/api-keys", nil, "Idempotency-Key", strings.Repeat("x", 300)); r.Code != 200 {
		t.Fatalf("GET with key: %d", r.Code)
	}
}

// TestIdempotencySurvivesRestart reopens the store under a new server:
// the first answer is replayed; a record a dead process left in flight is
// abandoned, so its retry runs.
func TestIdempotencySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smtpmux.db")
	sealer, _ := store.NewSealer("test-secret-key-0123456789abcdef")
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	fs := &fakeSender{}
	open := func() (*store.Store, *Server) {
		st, err := store.Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return st, New(Options{Store: st, Sealer: sealer, Sending: sendapi.Config{Sender: fs}, Now: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	}
	post := func(srv *Server, key string) *resp {
		e := &testEnv{t: t, srv: srv}
		return e.send("/api/v1/emails/send", validSend(), "Idempotency-Key", key)
	}
	st, srv := open()
	first := post(srv, "survive")
	// Another process claimed "orphan" and died before answering.
	if _, err := st.BeginIdempotent("key_sendingkey00000000000000", "orphan", []byte("whatever"), "dead-process", clock.Now(), store.IdempotencyTTL); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, srv = open()
	defer st.Close()
	if r := post(srv, "survive"); r.Code != 200 || r.Body != first.Body {
		t.Fatalf("after restart: %d %s vs %s", r.Code, r.Body, first.Body)
	}
	if r := post(srv, "orphan"); r.Code != 200 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("abandoned record: %d %s", r.Code, r.Body)
	}
	if n := len(fs.submitted()); n != 2 {
		t.Fatalf("%d submissions", n)
	}
}
