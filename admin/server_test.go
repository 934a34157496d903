package admin

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

func TestHealthAndReady(t *testing.T) {
	ready := errors.New("store not open")
	e := newEnv(t, func(o *Options) { o.Ready = func() error { return ready } })

	r := e.do("GET", "/healthz", nil, "Authorization", "")
	if r.Code != 200 || r.str("data.status") != "ok" || r.get("ok") != true {
		t.Fatalf("healthz: %d %s", r.Code, r.Body)
	}
	r = e.do("GET", "/readyz", nil, "Authorization", "")
	expectErr(t, r, 503, "service_unavailable", "")
	if strings.Contains(r.Body, "store not open") {
		t.Fatalf("readiness detail leaked: %s", r.Body)
	}
	ready = nil
	r = e.do("GET", "/readyz", nil, "Authorization", "")
	if r.Code != 200 || r.str("data.status") != "ready" || r.str("data.version") != "test" {
		t.Fatalf("readyz: %d %s", r.Code, r.Body)
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/nope", 404, "not_found"},
		{"GET", "/api/v1/nope", 404, "not_found"},
		{"GET", "/api/v1/providers/" + e.managed.ID + "/nope", 404, "not_found"},
		{"PUT", "/api/v1/providers", 405, "method_not_allowed"},
		{"POST", "/api/v1/providers/" + e.managed.ID, 405, "method_not_allowed"},
		{"GET", "/api/v1/providers/" + e.managed.ID + "/activate", 405, "method_not_allowed"},
		{"DELETE", "/healthz", 405, "method_not_allowed"},
		{"GET", "/api/v1//providers", 404, "not_found"},
		{"PATCH", "/api/v1/providers/../providers/" + e.managed.ID, 404, "not_found"},
		{"GET", "/api/v1/providers/", 404, "not_found"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := e.do(tc.method, tc.path, nil)
			expectErr(t, r, tc.status, tc.code, "")
			if tc.status == 405 && r.Header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

func TestSuccessEnvelope(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/api/v1/providers", nil)
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	if _, ok := r.get("data").([]any); !ok {
		t.Fatalf("data is not a list: %s", r.Body)
	}
	if r.get("pagination.has_more") != false || r.get("pagination") == nil {
		t.Fatalf("pagination: %s", r.Body)
	}
	if _, present := r.get("pagination").(map[string]any)["next_cursor"]; !present {
		t.Fatalf("next_cursor missing: %s", r.Body)
	}
	r = e.do("GET", "/api/v1/providers/"+e.managed.ID, nil)
	if _, has := r.JSON["pagination"]; has {
		t.Fatalf("single resource with pagination: %s", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	sending := e.addKey(e.team.ID, store.KeySending)
	readOnly := e.addKey(e.team.ID, store.KeyRoot, "provider.read")
	revoked := e.addKey(e.team.ID, store.KeyRoot, "*")
	k, _ := e.st.KeyBySecret(revoked)
	if _, err := e.st.UpdateKey(e.team.ID, k.ID, func(k *store.APIKey) error {
		now := time.Now()
		k.RevokedAt = &now
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, auth, method, path string
		status                   int
		code                     string
	}{
		{"no header", "", "GET", "/api/v1/providers", 401, "authentication_required"},
		{"basic scheme", "Basic dXNlcjpwYXNz", "GET", "/api/v1/providers", 401, "authentication_required"},
		{"empty bearer", "Bearer ", "GET", "/api/v1/providers", 401, "authentication_required"},
		{"garbage", "Bearer hello", "GET", "/api/v1/providers", 401, "authentication_required"},
		{"unknown root key", "Bearer " + store.NewSecret(store.SecretPrefixRoot), "GET", "/api/v1/providers", 401, "authentication_required"},
		{"revoked key", "Bearer " + revoked, "GET", "/api/v1/providers", 401, "authentication_required"},
		{"sending key", "Bearer " + sending, "GET", "/api/v1/providers", 403, "insufficient_permissions"},
		{"operator token is not a team key", "Bearer " + testOperatorToken, "GET", "/api/v1/providers", 401, "authentication_required"},
		{"lacks provider.create", "Bearer " + readOnly, "POST", "/api/v1/providers", 403, "insufficient_permissions"},
		{"lacks key.read", "Bearer " + readOnly, "GET", "/api/v1/api-keys", 403, "insufficient_permissions"},
		{"lacks email.read", "Bearer " + readOnly, "GET", "/api/v1/emails/eml_000000000000000000000000", 403, "insufficient_permissions"},
		{"lowercase scheme works", "bearer " + e.root, "GET", "/api/v1/providers", 200, ""},
		{"read-only may read", "Bearer " + readOnly, "GET", "/api/v1/providers", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, validSMTP(), "Authorization", tc.auth)
			if tc.status == 200 {
				if r.Code != 200 {
					t.Fatalf("%d %s", r.Code, r.Body)
				}
				return
			}
			expectErr(t, r, tc.status, tc.code, "")
			if tc.status == 401 && r.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestOtherTeamsResourcesAre404(t *testing.T) {
	e := newEnv(t)
	_, otherKey, otherRoot := e.provision("other")
	ps, _ := e.st.Providers(otherKey.TeamID)
	otherManaged := ps[0].ID
	mine := e.root
	e.root = otherRoot
	otherSMTP := e.createProvider(validSMTP())
	e.root = mine

	msgID := store.NewID(store.PrefixMessage)
	if err := e.st.Enqueue(&store.Message{ID: msgID, TeamID: otherKey.TeamID, From: "a@b.c",
		Recipients: []store.Recipient{{Address: "x@y.z", Status: state.MessagePending}}, Status: state.MessagePending,
		CreatedAt: time.Now(), UpdatedAt: time.Now(), NextAttemptAt: time.Now().Add(time.Hour)}, []byte("x")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/providers/" + otherSMTP},
		{"GET", "/api/v1/providers/" + otherManaged},
		{"PATCH", "/api/v1/providers/" + otherSMTP},
		{"DELETE", "/api/v1/providers/" + otherSMTP},
		{"POST", "/api/v1/providers/" + otherSMTP + "/activate"},
		{"POST", "/api/v1/providers/" + otherSMTP + "/deactivate"},
		{"POST", "/api/v1/providers/" + otherSMTP + "/test"},
		{"GET", "/api/v1/api-keys/" + otherKey.ID},
		{"DELETE", "/api/v1/api-keys/" + otherKey.ID},
		{"GET", "/api/v1/emails/" + msgID},
		{"GET", "/api/v1/providers/not-an-id"},
		{"GET", "/api/v1/api-keys/key_x"},
		{"GET", "/api/v1/emails/eml_x"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			expectErr(t, e.do(tc.method, tc.path, map[string]any{"name": "x"}), 404, "not_found", "")
		})
	}
	// The other team's key was not revoked and its provider not deleted.
	if k, _ := e.st.Key(otherKey.ID); !k.Active() {
		t.Fatal("other team's key revoked")
	}
	if _, err := e.st.Provider(otherSMTP); err != nil {
		t.Fatal("other team's provider deleted")
	}
	r := e.do("GET", "/api/v1/providers", nil)
	for _, it := range r.get("data").([]any) {
		if id := it.(map[string]any)["id"]; id == otherSMTP || id == otherManaged {
			t.Fatalf("list shows another team's provider %v", id)
		}
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t) // the defaults: 600 per 60 s
	var r *resp
	for i := 1; i <= 600; i++ {
		r = e.do("GET", "/api/v1/providers?limit=1", nil)
		if r.Code != 200 {
			t.Fatalf("request %d: %d %s", i, r.Code, r.Body)
		}
		// X-RateLimit-Reset is the Unix time the window ends (the
		// window started at the first request, on the test clock).
		if i == 1 && (r.Header.Get("X-RateLimit-Limit") != "600" || r.Header.Get("X-RateLimit-Remaining") != "599" ||
			r.Header.Get("X-RateLimit-Reset") != strconv.FormatInt(e.clock.Now().Add(60*time.Second).Unix(), 10)) {
			t.Fatalf("headers: %v", r.Header)
		}
	}
	if r.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("remaining after 600: %q", r.Header.Get("X-RateLimit-Remaining"))
	}
	e.clock.Advance(20 * time.Second)
	r = e.do("GET", "/api/v1/providers", nil)
	expectErr(t, r, 429, "rate_limit_exceeded", "")
	if r.Header.Get("Retry-After") != "40" || r.get("error.retryable") != true {
		t.Fatalf("Retry-After %q retryable %v", r.Header.Get("Retry-After"), r.get("error.retryable"))
	}
	// Another key has its own budget.
	other := e.addKey(e.team.ID, store.KeyRoot, "*")
	if r := e.do("GET", "/api/v1/providers", nil, "Authorization", "Bearer "+other); r.Code != 200 {
		t.Fatalf("other key: %d", r.Code)
	}
	// The window ends; the first key may call again.
	e.clock.Advance(41 * time.Second)
	if r := e.do("GET", "/api/v1/providers", nil); r.Code != 200 || r.Header.Get("X-RateLimit-Remaining") != "599" {
		t.Fatalf("after window: %d %v", r.Code, r.Header)
	}
}

func TestRateLimitConfigurable(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HTTP.RateLimit, o.HTTP.RateWindow = 3, 10*time.Second })
	for i := 0; i < 3; i++ {
		if r := e.do("GET", "/api/v1/providers", nil); r.Code != 200 {
			t.Fatal(r.Code)
		}
	}
	expectErr(t, e.do("GET", "/api/v1/providers", nil), 429, "rate_limit_exceeded", "")
}

// hide keeps httptest from setting Content-Length, so the server has to
// enforce the limit while reading.
type hide struct{ io.Reader }

func TestBodyLimits(t *testing.T) {
	e := newEnv(t)
	// A valid JSON object of exactly maxBodyBytes+1 bytes.
	pad := httpapi.MaxBodyBytes + 1 - len(`{"name":""}`)
	over := `{"name":"` + strings.Repeat("a", pad) + `"}`
	if len(over) != httpapi.MaxBodyBytes+1 {
		t.Fatal(len(over))
	}
	expectErr(t, e.do("POST", "/api/v1/providers", over), 413, "payload_too_large", "")
	expectErr(t, e.do("POST", "/api/v1/providers", hide{strings.NewReader(over)}), 413, "payload_too_large", "")
	// Exactly the limit is read and judged on content (a 1 MiB name).
	exact := over[:9] + over[10:]
	expectErr(t, e.do("POST", "/api/v1/providers", hide{strings.NewReader(exact)}), 422, "validation_error", "name")
}

func TestMalformedBodies(t *testing.T) {
	e := newEnv(t)
	id := e.createProvider(validSMTP())
	for _, tc := range []struct{ name, body, param string }{
		{"empty", "", ""},
		{"whitespace", "  \n", ""},
		{"truncated", `{"name":`, ""},
		{"trailing garbage", `{"name":"x"} x`, ""},
		{"array", `[1,2]`, ""},
		{"null", `null`, ""},
		{"string", `"x"`, ""},
		{"unknown field", `{"name":"x","smtp_prot":"tls"}`, "smtp_prot"},
		{"read-only field", `{"id":"dprov_x"}`, "id"},
		{"wrong type", `{"smtp_port":"587"}`, "smtp_port"},
	} {
		for _, target := range []struct{ method, path string }{{"POST", "/api/v1/providers"}, {"PATCH", "/api/v1/providers/" + id}, {"POST", "/api/v1/api-keys"}} {
			if target.path == "/api/v1/api-keys" && tc.param != "" {
				continue // field names differ there
			}
			t.Run(tc.name+" "+target.method+" "+target.path, func(t *testing.T) {
				expectErr(t, e.do(target.method, target.path, tc.body), 400, "invalid_parameter", tc.param)
			})
		}
	}
}

func TestPanicIsJSON500(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Health = func(string) provhealth.Snapshot { panic("boom") } })
	r := e.do("GET", "/api/v1/providers/"+e.managed.ID, nil)
	expectErr(t, r, 500, "internal_error", "")
	if strings.Contains(r.Body, "boom") {
		t.Fatalf("panic value leaked: %s", r.Body)
	}
}

func TestPaginationParams(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{"limit=0", "limit=101", "limit=abc", "limit=", "limit=-1", "cursor=%25%25", "cursor=" + "Zm9vIGJhcg"} {
		expectErr(t, e.do("GET", "/api/v1/providers?"+q, nil), 400, "invalid_parameter", strings.SplitN(q, "=", 2)[0])
	}
	for _, q := range []string{"limit=1", "limit=100", ""} {
		if r := e.do("GET", "/api/v1/providers?"+q, nil); r.Code != 200 {
			t.Fatalf("%s: %d", q, r.Code)
		}
	}
}

func TestETagListMatches(t *testing.T) {
	for _, c := range []struct {
		list, cur string
		want      bool
	}{
		{`W/"3"`, `W/"3"`, true},
		{`"3"`, `W/"3"`, true},
		{`W/"3"`, `"3"`, true},
		{`"1", W/"3"`, `W/"3"`, true},
		{`*`, `W/"3"`, true},
		{`*`, ``, false},
		{`W/"4"`, `W/"3"`, false},
		{`W/"31"`, `W/"3"`, false},
		{`3`, `W/"3"`, false},
		{``, `W/"3"`, false},
	} {
		if got := etagListMatches(c.list, c.cur); got != c.want {
			t.Errorf("etagListMatches(%q, %q) = %v, want %v", c.list, c.cur, got, c.want)
		}
	}
}
