package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/provhealth"
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

// fakeTester answers provider tests with whatever fn returns.
type fakeTester struct {
	mu    sync.Mutex
	fn    func(ctx context.Context, p *store.Provider) provhealth.TestResult
	calls []string
}

func (f *fakeTester) TestProvider(ctx context.Context, p *store.Provider) provhealth.TestResult {
	f.mu.Lock()
	f.calls = append(f.calls, p.ID)
	fn := f.fn
	f.mu.Unlock()
	if fn == nil {
		return provhealth.TestResult{Outcome: provhealth.OK, Message: "250 OK"}
	}
	return fn(ctx, p)
}

// testEnv is one admin Server on a fresh store with a provisioned team.
type testEnv struct {
	t       testing.TB
	st      *store.Store
	sealer  *store.Sealer
	srv     *Server
	clock   *fakeClock
	tester  *fakeTester
	team    *store.Team
	root    string // the team's root key secret
	rootKey *store.APIKey
	managed *store.Provider
	// forbidden strings must never appear in any response body: upstream
	// passwords sent in requests, and key secrets after their creation.
	forbidden []string
}

const testOperatorToken = "operator-token-for-tests-0123456789"

func newEnv(t testing.TB, mods ...func(*Options)) *testEnv {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := store.NewSealer("test-secret-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, st: st, sealer: sealer,
		clock:  &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		tester: &fakeTester{}}
	opts := Options{
		Store: st, Sealer: sealer, Providers: ProviderOptions{Tester: e.tester}, Now: e.clock.Now,
		Logger: slog.New(slog.DiscardHandler), OperatorToken: testOperatorToken, Version: "test",
	}
	for _, m := range mods {
		m(&opts)
	}
	e.srv = New(opts)
	e.team, e.rootKey, e.root = e.provision("default")
	ps, err := st.Providers(e.team.ID)
	if err != nil || len(ps) != 1 || !ps[0].Managed {
		t.Fatalf("managed provider: %v %v", ps, err)
	}
	e.managed = ps[0]
	return e
}

// provision creates another team with its managed account and root key.
func (e *testEnv) provision(name string) (*store.Team, *store.APIKey, string) {
	e.t.Helper()
	secret := store.NewSecret(store.SecretPrefixRoot)
	team, key, err := ProvisionTeam(e.st, name, secret, nil, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return team, key, secret
}

// addKey stores a key directly (bypassing the API) and returns its secret.
func (e *testEnv) addKey(teamID, typ string, perms ...string) string {
	e.t.Helper()
	prefix := store.SecretPrefixRoot
	if typ == store.KeySending {
		prefix = store.SecretPrefixSending
	}
	secret := store.NewSecret(prefix)
	k := &store.APIKey{ID: store.NewID(store.PrefixKey), TeamID: teamID, Name: "t", Type: typ,
		Prefix: secret[:12], Hash: store.HashSecret(secret), Permissions: perms,
		SendScope: store.Scope{Type: "all"}, CreatedAt: e.clock.Now()}
	if err := e.st.CreateKey(k); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// resp is a decoded answer.
type resp struct {
	Code   int
	Header http.Header
	Body   string
	JSON   map[string]any
}

// get walks a dotted path ("data.quotas.per_hour.min", "data.0.id").
func (r *resp) get(path string) any {
	var cur any = r.JSON
	for _, part := range strings.Split(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			cur = v[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i >= len(v) {
				return nil
			}
			cur = v[i]
		default:
			return nil
		}
	}
	return cur
}

func (r *resp) str(path string) string { s, _ := r.get(path).(string); return s }

// fields lists the field names of a 422's errors[].
func (r *resp) fields() []string {
	var out []string
	errs, _ := r.get("error.errors").([]any)
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

// do sends a request authenticated with the team's root key unless the
// headers say otherwise ("Authorization", "" removes it). body may be nil,
// a string (sent verbatim) or a value to marshal.
func (e *testEnv) do(method, path string, body any, hdr ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = strings.NewReader(string(data))
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+e.root)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	r := &resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
	checkEnvelope(e.t, e.forbidden, method, path, r)
	return r
}

// checkEnvelope asserts what must hold for every answer: JSON, the
// envelope shape of SPEC §3, and no secret material.
func checkEnvelope(t testing.TB, forbidden []string, method, path string, r *resp) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: content-type %q body %s", method, path, ct, r.Body)
	}
	if err := json.Unmarshal([]byte(r.Body), &r.JSON); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v: %s", method, path, err, r.Body)
	}
	ok, isBool := r.JSON["ok"].(bool)
	if !isBool {
		t.Fatalf("%s %s: no ok bool: %s", method, path, r.Body)
	}
	if id := r.str("meta.request_id"); !store.ValidID(store.PrefixRequest, id) || r.Header.Get("X-Request-Id") != id {
		t.Fatalf("%s %s: bad request_id %q / header %q", method, path, id, r.Header.Get("X-Request-Id"))
	}
	if ok != (r.Code < 400) {
		t.Fatalf("%s %s: ok=%v with status %d", method, path, ok, r.Code)
	}
	if !ok {
		if r.str("error.code") == "" || r.str("error.message") == "" {
			t.Fatalf("%s %s: error without code/message: %s", method, path, r.Body)
		}
		if _, b := r.get("error.retryable").(bool); !b {
			t.Fatalf("%s %s: error without retryable: %s", method, path, r.Body)
		}
		if _, has := r.JSON["data"]; has {
			t.Fatalf("%s %s: error with data: %s", method, path, r.Body)
		}
	}
	for _, bad := range append([]string{"smtp_password_sealed", `"hash"`}, forbidden...) {
		if bad != "" && strings.Contains(r.Body, bad) {
			t.Fatalf("%s %s: response contains secret material %q: %s", method, path, bad, r.Body)
		}
	}
}

// secret registers s as never to be seen in a response again.
func (e *testEnv) secret(s string) { e.forbidden = append(e.forbidden, s) }

// expectErr asserts an error answer's status, code and (when given) the
// param or one of the errors[] fields.
func expectErr(t *testing.T, r *resp, status int, code, field string) {
	t.Helper()
	if r.Code != status || r.str("error.code") != code {
		t.Fatalf("want %d %s, got %d: %s", status, code, r.Code, r.Body)
	}
	if field == "" {
		return
	}
	if r.str("error.param") == field {
		return
	}
	for _, f := range r.fields() {
		if f == field {
			return
		}
	}
	t.Fatalf("want field %q named, got param %q fields %v: %s", field, r.str("error.param"), r.fields(), r.Body)
}

// validSMTP is a complete create body; tests change one thing at a time.
func validSMTP() map[string]any {
	return map[string]any{
		"name": "Primary SMTP", "smtp_host": "smtp.example.com", "smtp_port": 587,
		"smtp_protocol": "starttls", "smtp_username": "user@example.com", "smtp_password": "s3cret-Upstream-PW",
	}
}

// createProvider creates one through the API and returns its ID.
func (e *testEnv) createProvider(body map[string]any) string {
	e.t.Helper()
	if pw, ok := body["smtp_password"].(string); ok && pw != "" {
		e.secret(pw)
	}
	r := e.do("POST", "/api/v1/providers", body)
	if r.Code != http.StatusCreated {
		e.t.Fatalf("create provider: %d %s", r.Code, r.Body)
	}
	return r.str("data.id")
}
