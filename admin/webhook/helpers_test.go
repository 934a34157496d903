package webhook

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// fakeClock is the Options.Now seam: tests move time instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// env is a store, a dispatcher on a fake clock, and a team.
type env struct {
	t      *testing.T
	path   string
	st     *store.Store
	sealer *store.Sealer
	clock  *fakeClock
	d      *Dispatcher
	team   string
}

func newTestEnv(t *testing.T, mods ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "smtpmux.db"), team: "team_webhooktests000000000000",
		clock: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	var err error
	if e.sealer, err = store.NewSealer("test-secret-key-0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	e.open(mods...)
	t.Cleanup(func() { e.st.Close() })
	return e
}

// open (re)opens the store and builds a fresh dispatcher, as a restart.
func (e *env) open(mods ...func(*Options)) {
	st, err := store.Open(e.path, time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	opts := Options{Store: st, Sealer: e.sealer, Now: e.clock.Now, AllowPrivateTargets: true,
		Logger: slog.New(slog.DiscardHandler), Timeout: 2 * time.Second}
	for _, m := range mods {
		m(&opts)
	}
	e.d = New(opts)
}

// hook stores a webhook for the team and returns it with its secret.
func (e *env) hook(url string, types ...string) (*store.Webhook, string) {
	e.t.Helper()
	secret := NewSecret()
	now := e.clock.Now()
	w := &store.Webhook{ID: store.NewID(store.PrefixWebhook), TeamID: e.team, URL: url, EventTypes: types,
		Enabled: true, SecretSealed: e.sealer.Seal(secret), SecretPrefix: secret[:10], CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreateWebhook(w, 0); err != nil {
		e.t.Fatal(err)
	}
	e.d.Invalidate()
	return w, secret
}

// deliveries lists a webhook's deliveries, newest first.
func (e *env) deliveries(w *store.Webhook) []*store.WebhookDelivery {
	e.t.Helper()
	ds, _, err := e.st.WebhookDeliveries(w.ID, "", "", 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

// request is one delivery as a receiver saw it.
type request struct {
	header http.Header
	body   []byte
	valid  error // VerifyRequest's verdict
}

// sink is a receiver: it verifies each request against its secret at the
// fake clock's time, and answers with status(n) for the n-th request.
type sink struct {
	mu     sync.Mutex
	secret string
	clock  *fakeClock
	status func(n int) int
	block  chan struct{} // when set, requests wait for it to close
	reqs   []request
	srv    *httptest.Server
}

func newSink(t *testing.T, clock *fakeClock, status func(n int) int) *sink {
	s := &sink{clock: clock, status: status}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if s.block != nil {
			select {
			case <-s.block:
			case <-r.Context().Done():
				return
			}
		}
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, request{header: r.Header.Clone(), body: body,
			valid: VerifyRequest(s.secret, body, r.Header, s.clock.Now(), 5*time.Minute)})
		code := 200
		if s.status != nil {
			code = s.status(n)
		}
		s.mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, "answer body\n")
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) received() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// decode parses a delivered body.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, b)
	}
	return m
}
