package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/store"
)

func validWebhook(url string) map[string]any {
	return map[string]any{"name": "Ops", "url": url, "event_types": []string{"message.delivered", "message.bounced"}}
}

func TestWebhookValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		mod    func(map[string]any)
		status int
		code   string
		field  string
	}{
		{"url missing", func(b map[string]any) { delete(b, "url") }, 422, "validation_error", "url"},
		{"url ftp", func(b map[string]any) { b["url"] = "ftp://hooks.example.com/x" }, 422, "validation_error", "url"},
		{"url relative", func(b map[string]any) { b["url"] = "/hooks" }, 422, "validation_error", "url"},
		{"url credentials", func(b map[string]any) { b["url"] = "https://u:p@hooks.example.com/" }, 422, "validation_error", "url"},
		{"url loopback", func(b map[string]any) { b["url"] = "http://127.0.0.1:8080/hook" }, 422, "validation_error", "url"},
		{"url private", func(b map[string]any) { b["url"] = "https://10.1.2.3/hook" }, 422, "validation_error", "url"},
		{"url v6 loopback", func(b map[string]any) { b["url"] = "http://[::1]/hook" }, 422, "validation_error", "url"},
		{"url localhost", func(b map[string]any) { b["url"] = "http://localhost/hook" }, 422, "validation_error", "url"},
		{"url metadata", func(b map[string]any) { b["url"] = "http://169.254.169.254/latest" }, 422, "validation_error", "url"},
		// Issue 12 item 11: forms the first blocklist missed.
		{"url site-local v6", func(b map[string]any) { b["url"] = "http://[fec0::1]/hook" }, 422, "validation_error", "url"},
		{"url local NAT64", func(b map[string]any) { b["url"] = "http://[64:ff9b:1::a00:1]/hook" }, 422, "validation_error", "url"},
		{"url NAT64 of loopback", func(b map[string]any) { b["url"] = "http://[64:ff9b::7f00:1]/hook" }, 422, "validation_error", "url"},
		{"url 6to4 of private", func(b map[string]any) { b["url"] = "http://[2002:c0a8:101::1]/hook" }, 422, "validation_error", "url"},
		{"url v4-compatible", func(b map[string]any) { b["url"] = "http://[::127.0.0.1]/hook" }, 422, "validation_error", "url"},
		{"url mapped loopback", func(b map[string]any) { b["url"] = "http://[::ffff:127.0.0.1]/hook" }, 422, "validation_error", "url"},
		{"url decimal v4", func(b map[string]any) { b["url"] = "http://2130706433/hook" }, 422, "validation_error", "url"},
		{"url octal v4", func(b map[string]any) { b["url"] = "http://0177.0.0.1/hook" }, 422, "validation_error", "url"},
		{"url metadata name", func(b map[string]any) { b["url"] = "http://metadata.google.internal./x" }, 422, "validation_error", "url"},
		{"url number", func(b map[string]any) { b["url"] = 5 }, 400, "invalid_parameter", "url"},
		{"types missing", func(b map[string]any) { delete(b, "event_types") }, 422, "validation_error", "event_types"},
		{"types empty", func(b map[string]any) { b["event_types"] = []string{} }, 422, "validation_error", "event_types"},
		{"type unknown", func(b map[string]any) { b["event_types"] = []string{"message.delivered", "ses.bounce"} }, 422, "validation_error", "event_types[1]"},
		{"type test", func(b map[string]any) { b["event_types"] = []string{"smtpmux.test"} }, 422, "validation_error", "event_types[0]"},
		{"types string", func(b map[string]any) { b["event_types"] = "message.delivered" }, 400, "invalid_parameter", "event_types"},
		{"name long", func(b map[string]any) { b["name"] = strings.Repeat("n", 101) }, 422, "validation_error", "name"},
		{"name newline", func(b map[string]any) { b["name"] = "a\nb" }, 422, "validation_error", "name"},
		{"enabled string", func(b map[string]any) { b["enabled"] = "yes" }, 400, "invalid_parameter", "enabled"},
		{"unknown field", func(b map[string]any) { b["secret"] = "whsec_mine" }, 400, "invalid_parameter", "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := validWebhook("https://hooks.example.com/smtpmux")
			tc.mod(b)
			expectErr(t, e.do("POST", "/api/v1/webhooks", b), tc.status, tc.code, tc.field)
		})
	}
	if hooks, _ := e.st.Webhooks(e.team.ID); len(hooks) != 0 {
		t.Fatalf("invalid input stored %d webhooks", len(hooks))
	}
}

func TestWebhookCRUDAndSecrets(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/api/v1/webhooks", validWebhook("https://hooks.example.com/a"))
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	id, secret := r.str("data.id"), r.str("data.secret")
	if !store.ValidID(store.PrefixWebhook, id) || !strings.HasPrefix(secret, "whsec_") || len(secret) != 70 ||
		r.str("data.secret_prefix") != secret[:10] || r.Header.Get("Location") != "/api/v1/webhooks/"+id ||
		r.get("data.enabled") != true || r.get("data.failing") != false {
		t.Fatalf("create: %s", r.Body)
	}
	e.secret(secret)
	e.secret("secret_sealed")
	stored, _ := e.st.Webhook(e.team.ID, id)
	if strings.Contains(string(stored.SecretSealed), secret) {
		t.Fatal("secret stored in clear")
	}
	if r := e.do("GET", "/api/v1/webhooks/"+id, nil); r.Code != 200 || r.get("data.secret") != nil || r.Header.Get("ETag") == "" {
		t.Fatalf("get: %s", r.Body)
	}
	if r := e.do("GET", "/api/v1/webhooks", nil); r.Code != 200 || len(r.get("data").([]any)) != 1 {
		t.Fatalf("list: %s", r.Body)
	}
	r = e.do("PATCH", "/api/v1/webhooks/"+id, map[string]any{"event_types": []string{"provider.status_changed"}, "enabled": false, "name": nil})
	if r.Code != 200 || r.str("data.event_types.0") != "provider.status_changed" || r.get("data.enabled") != false || r.get("data.name") != nil {
		t.Fatalf("patch: %s", r.Body)
	}
	expectErr(t, e.do("PATCH", "/api/v1/webhooks/"+id, map[string]any{"url": "http://192.168.1.1/"}), 422, "validation_error", "url")
	expectErr(t, e.do("PATCH", "/api/v1/webhooks/"+id, map[string]any{"enabled": true}, "If-Match", `W/"1"`), 409, "conflict", "")
	// Re-enabling clears the failing flag.
	if _, err := e.st.UpdateWebhook(e.team.ID, id, 0, func(w *store.Webhook) error { w.Failing = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := e.do("PATCH", "/api/v1/webhooks/"+id, map[string]any{"enabled": true}); r.get("data.failing") != false || r.get("data.enabled") != true {
		t.Fatalf("re-enable: %s", r.Body)
	}
	r = e.do("POST", "/api/v1/webhooks/"+id+"/rotate-secret", nil)
	rotated := r.str("data.secret")
	if r.Code != 200 || !strings.HasPrefix(rotated, "whsec_") || rotated == secret || r.str("data.secret_rotated_at") == "" {
		t.Fatalf("rotate: %s", r.Body)
	}
	e.secret(rotated)
	if r := e.do("GET", "/api/v1/webhooks/"+id, nil); r.str("data.secret_prefix") != rotated[:10] {
		t.Fatalf("after rotate: %s", r.Body)
	}
	// Another team cannot see it; a read-only key cannot change it.
	_, _, other := e.provision("other")
	expectErr(t, e.do("GET", "/api/v1/webhooks/"+id, nil, "Authorization", "Bearer "+other), 404, "not_found", "")
	ro := e.addKey(e.team.ID, store.KeyRoot, "webhook.read")
	expectErr(t, e.do("POST", "/api/v1/webhooks/"+id+"/rotate-secret", nil, "Authorization", "Bearer "+ro), 403, "insufficient_permissions", "")
	if r := e.do("DELETE", "/api/v1/webhooks/"+id, nil); r.Code != 200 || r.get("data.deleted") != true {
		t.Fatalf("delete: %s", r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/webhooks/"+id, nil), 404, "not_found", "")
	expectErr(t, e.do("GET", "/api/v1/webhooks/twhk_nope", nil), 404, "not_found", "")
}

func TestWebhookLimit(t *testing.T) {
	e := newEnv(t)
	for i := range maxWebhooksPerTeam {
		if r := e.do("POST", "/api/v1/webhooks", validWebhook("https://hooks.example.com/"+string(rune('a'+i)))); r.Code != 201 {
			t.Fatalf("%d: %d %s", i, r.Code, r.Body)
		}
	}
	expectErr(t, e.do("POST", "/api/v1/webhooks", validWebhook("https://hooks.example.com/z")), 409, "limit_exceeded", "")
}

// receiver is a webhook endpoint that verifies every delivery.
type receiver struct {
	mu      sync.Mutex
	secret  string
	fails   int // answer 500 to this many requests first
	got     []map[string]string
	invalid int
	srv     *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err := webhook.VerifyRequest(rc.secret, body, r.Header, time.Now(), 5*time.Minute); err != nil {
			rc.invalid++
			http.Error(w, "bad signature", 401)
			return
		}
		if rc.fails > 0 {
			rc.fails--
			http.Error(w, "try later", 500)
			return
		}
		rc.got = append(rc.got, map[string]string{"type": r.Header.Get(webhook.HeaderEventType),
			"event": r.Header.Get(webhook.HeaderEventID), "attempt": r.Header.Get(webhook.HeaderAttempt), "body": string(body)})
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// TestWebhookEndToEnd creates a webhook through the API, emits an event
// and a test event, and checks the signed deliveries and the delivery log.
func TestWebhookEndToEnd(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Webhooks.AllowPrivateTargets = true; o.Now = time.Now })
	rc := newReceiver(t)
	r := e.do("POST", "/api/v1/webhooks", validWebhook(rc.srv.URL+"/hook"))
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	id := r.str("data.id")
	rc.secret = r.str("data.secret")
	e.secret(rc.secret)
	rc.fails = 2
	hooks := e.srv.Webhooks()
	hooks.Emit(event.Event{Type: event.Delivered, TeamID: e.team.ID, MessageID: "eml_x", Recipients: []string{"a@example.net"}, Code: 250})
	hooks.Emit(event.Event{Type: event.Rejected, TeamID: e.team.ID, MessageID: "eml_y"}) // not subscribed
	r = e.do("POST", "/api/v1/webhooks/"+id+"/test", nil)
	if r.Code != 202 || !strings.HasPrefix(r.str("data.event_id"), "evt_") {
		t.Fatalf("test: %d %s", r.Code, r.Body)
	}
	// Two attempts fail (500); the retries are scheduled 30 s after the
	// events, so deliver again as if that time had passed.
	hooks.DeliverDue(t.Context())
	r = e.do("GET", "/api/v1/webhooks/"+id+"/deliveries", nil)
	if r.Code != 200 || len(r.get("data").([]any)) != 2 || r.str("data.0.status") != "pending" ||
		r.get("data.0.last_status_code") != 500.0 || r.str("data.0.next_attempt_at") == "" {
		t.Fatalf("deliveries: %s", r.Body)
	}
	for _, d := range r.get("data").([]any) {
		if _, err := e.st.UpdateWebhookDelivery(d.(map[string]any)["id"].(string), func(x *store.WebhookDelivery) error {
			x.NextAttemptAt = time.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	hooks.DeliverDue(t.Context())
	if rc.invalid != 0 || len(rc.got) != 2 {
		t.Fatalf("receiver got %d valid, %d invalid", len(rc.got), rc.invalid)
	}
	types := rc.got[0]["type"] + "," + rc.got[1]["type"]
	if types != "message.delivered,smtpmux.test" && types != "smtpmux.test,message.delivered" {
		t.Fatalf("types %s", types)
	}
	r = e.do("GET", "/api/v1/webhooks/"+id+"/deliveries?status=succeeded&limit=1", nil)
	if r.Code != 200 || r.str("data.0.status") != "succeeded" || r.get("data.0.attempts") != 2.0 ||
		r.get("pagination.has_more") != true || r.str("data.0.event.id") == "" {
		t.Fatalf("succeeded: %s", r.Body)
	}
	r = e.do("GET", "/api/v1/webhooks/"+id+"/deliveries?status=succeeded&limit=1&cursor="+r.str("pagination.next_cursor"), nil)
	if r.Code != 200 || len(r.get("data").([]any)) != 1 || r.get("pagination.has_more") != false {
		t.Fatalf("page 2: %s", r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/webhooks/"+id+"/deliveries?status=done", nil), 400, "invalid_parameter", "status")
}
