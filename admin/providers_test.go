package admin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

func TestCreateProviderValidation(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 1000 })
	with := func(k string, v any) map[string]any {
		b := validSMTP()
		if v == "<absent>" {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	quota := func(w string, v any) map[string]any { return with("quotas", map[string]any{w: v}) }
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"name missing", with("name", "<absent>"), 422, "validation_error", "name"},
		{"name null", with("name", nil), 422, "validation_error", "name"},
		{"name blank", with("name", "   "), 422, "validation_error", "name"},
		{"name too long", with("name", strings.Repeat("n", 101)), 422, "validation_error", "name"},
		{"name control char", with("name", "a\nb"), 422, "validation_error", "name"},
		{"name wrong type", with("name", 12), 400, "invalid_parameter", "name"},
		{"host missing", with("smtp_host", "<absent>"), 422, "validation_error", "smtp_host"},
		{"host blank", with("smtp_host", ""), 422, "validation_error", "smtp_host"},
		{"host with scheme", with("smtp_host", "smtp://mail.example.com"), 422, "validation_error", "smtp_host"},
		{"host with port", with("smtp_host", "mail.example.com:25"), 422, "validation_error", "smtp_host"},
		{"host with space", with("smtp_host", "mail example.com"), 422, "validation_error", "smtp_host"},
		{"host bad label", with("smtp_host", "-mail.example.com"), 422, "validation_error", "smtp_host"},
		{"host wrong type", with("smtp_host", []string{"a"}), 400, "invalid_parameter", "smtp_host"},
		{"port missing", with("smtp_port", "<absent>"), 422, "validation_error", "smtp_port"},
		{"port zero", with("smtp_port", 0), 422, "validation_error", "smtp_port"},
		{"port too big", with("smtp_port", 65536), 422, "validation_error", "smtp_port"},
		{"port negative", with("smtp_port", -25), 422, "validation_error", "smtp_port"},
		{"port string", with("smtp_port", "587"), 400, "invalid_parameter", "smtp_port"},
		{"port fraction", with("smtp_port", 25.5), 400, "invalid_parameter", "smtp_port"},
		{"protocol unknown", with("smtp_protocol", "ssl3"), 422, "validation_error", "smtp_protocol"},
		{"protocol null", with("smtp_protocol", nil), 422, "validation_error", "smtp_protocol"},
		{"protocol wrong type", with("smtp_protocol", true), 400, "invalid_parameter", "smtp_protocol"},
		{"username CRLF", with("smtp_username", "u\r\nMAIL FROM:<x>"), 422, "validation_error", "smtp_username"},
		{"password NUL", with("smtp_password", "a\x00b"), 422, "validation_error", "smtp_password"},
		{"password wrong type", with("smtp_password", 1234), 400, "invalid_parameter", "smtp_password"},
		{"from_email invalid", with("from_email", "not-an-email"), 422, "validation_error", "from_email"},
		{"from_email with name", with("from_email", "Bob <bob@example.com>"), 422, "validation_error", "from_email"},
		{"from_email no domain", with("from_email", "bob@"), 422, "validation_error", "from_email"},
		{"reply_to_email invalid", with("reply_to_email", "a@b@c"), 422, "validation_error", "reply_to_email"},
		{"from_name header injection", with("from_name", "Bob\r\nBcc: x@y.z"), 422, "validation_error", "from_name"},
		{"reply_to_name too long", with("reply_to_name", strings.Repeat("r", 201)), 422, "validation_error", "reply_to_name"},
		{"tracking_domain url", with("tracking_domain", "https://links.example.com"), 422, "validation_error", "tracking_domain"},
		{"tracking_domain single label", with("tracking_domain", "localhost"), 422, "validation_error", "tracking_domain"},
		{"tracking_domain IP", with("tracking_domain", "10.0.0.1"), 422, "validation_error", "tracking_domain"},
		{"percentage negative", with("percentage", -1), 422, "validation_error", "percentage"},
		{"percentage over 100", with("percentage", 101), 422, "validation_error", "percentage"},
		{"percentage string", with("percentage", "50"), 400, "invalid_parameter", "percentage"},
		{"group unknown", with("group_id", "dgrp_000000000000000000000000"), 422, "validation_error", "group_id"},
		{"group wrong type", with("group_id", 7), 400, "invalid_parameter", "group_id"},
		{"quotas not object", with("quotas", "lots"), 400, "invalid_parameter", "quotas"},
		{"quotas unknown window", quota("per_week", 5), 400, "invalid_parameter", "quotas.per_week"},
		{"quota zero", quota("per_hour", 0), 422, "validation_error", "quotas.per_hour"},
		{"quota negative", quota("per_day", -3), 422, "validation_error", "quotas.per_day"},
		{"quota string", quota("per_minute", "5"), 400, "invalid_parameter", "quotas.per_minute"},
		{"quota fraction", quota("per_second", 1.5), 400, "invalid_parameter", "quotas.per_second"},
		{"quota range reversed", quota("per_hour", map[string]any{"min": 9, "max": 3}), 422, "validation_error", "quotas.per_hour"},
		{"quota range min zero", quota("per_hour", map[string]any{"min": 0, "max": 3}), 422, "validation_error", "quotas.per_hour.min"},
		{"quota range max missing", quota("per_hour", map[string]any{"min": 1}), 422, "validation_error", "quotas.per_hour.max"},
		{"quota range unknown key", quota("per_hour", map[string]any{"min": 1, "max": 2, "avg": 1}), 400, "invalid_parameter", "quotas.per_hour.avg"},
		{"quota range wrong type", quota("per_hour", map[string]any{"min": "1", "max": 2}), 400, "invalid_parameter", "quotas.per_hour.min"},
		{"type ses without region", with("type", "ses"), 422, "validation_error", "ses_region"},
		{"ses field on smtp", with("ses_region", "us-east-1"), 422, "validation_error", "ses_region"},
		{"type managed", with("type", "amazon_ses"), 422, "validation_error", "type"},
		{"type gmail", with("type", "gmail_api"), 422, "validation_error", "type"},
		{"type http", with("type", "http"), 422, "validation_error", "type"},
		{"type unknown", with("type", "sendgrid"), 422, "validation_error", "type"},
		{"type wrong type", with("type", 1), 400, "invalid_parameter", "type"},
		{"unknown field", with("smtp_pass", "x"), 400, "invalid_parameter", "smtp_pass"},
		{"IPv4 host ok", with("smtp_host", "93.184.216.34"), 201, "", ""},
		{"IPv6 host ok", with("smtp_host", "2606:4700::1111"), 201, "", ""},
		{"loopback host refused", with("smtp_host", "127.0.0.1"), 422, "validation_error", "smtp_host"},
		{"FQDN with dot ok", with("smtp_host", "mail.example.com."), 201, "", ""},
		{"percentage zero ok", with("percentage", 0), 201, "", ""},
		{"type smtp explicit ok", with("type", "smtp"), 201, "", ""},
		{"protocol none ok", with("smtp_protocol", "none"), 201, "", ""},
		{"protocol ssl ok", with("smtp_protocol", "ssl"), 201, "", ""},
		{"null quotas ok", with("quotas", nil), 201, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.secret("s3cret-Upstream-PW")
			r := e.do("POST", "/api/v1/providers", tc.body)
			if tc.status == 201 {
				if r.Code != 201 {
					t.Fatalf("%d %s", r.Code, r.Body)
				}
				return
			}
			expectErr(t, r, tc.status, tc.code, tc.field)
		})
	}

	// "http" says why, rather than a bare "invalid".
	r := e.do("POST", "/api/v1/providers", with("type", "http"))
	if !strings.Contains(r.str("error.message"), "coming soon") {
		t.Fatalf("http message: %s", r.Body)
	}
	// Several problems come back together.
	r = e.do("POST", "/api/v1/providers", map[string]any{"name": "", "smtp_port": 0, "from_email": "x"})
	expectErr(t, r, 422, "validation_error", "")
	if got := fmt.Sprint(r.fields()); got != "[name smtp_port from_email smtp_host]" {
		t.Fatalf("fields %s: %s", got, r.Body)
	}
}

func TestCreateAndGetProvider(t *testing.T) {
	e := newEnv(t)
	body := validSMTP()
	body["from_email"], body["from_name"] = "news@example.com", "Example News"
	body["reply_to_email"], body["reply_to_name"] = "help@example.com", "Help"
	body["tracking_domain"] = "Links.Example.com"
	e.verifiedDomain(e.team.ID, "example.com")
	body["percentage"] = 40
	body["quotas"] = map[string]any{"per_hour": 5, "per_day": map[string]any{"min": 10, "max": 20}, "per_second": nil}
	e.secret(body["smtp_password"].(string))
	r := e.do("POST", "/api/v1/providers", body)
	if r.Code != 201 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	id := r.str("data.id")
	if !store.ValidID(store.PrefixProvider, id) || r.Header.Get("Location") != "/api/v1/providers/"+id || r.Header.Get("ETag") != `W/"1"` {
		t.Fatalf("id %q location %q etag %q", id, r.Header.Get("Location"), r.Header.Get("ETag"))
	}
	want := map[string]any{
		"data.name": "Primary SMTP", "data.type": "smtp", "data.status": "active", "data.status_reason": nil,
		"data.is_active": true, "data.is_shared": false, "data.is_editable": true,
		"data.allowed_actions.update": true, "data.allowed_actions.delete": true, "data.allowed_actions.test": true,
		"data.allowed_actions.activate": false, "data.allowed_actions.deactivate": true,
		"data.smtp_host": "smtp.example.com", "data.smtp_port": 587.0, "data.smtp_protocol": "starttls",
		"data.smtp_username": "user@example.com", "data.has_smtp_password": true,
		"data.from_email": "news@example.com", "data.from_name": "Example News",
		"data.reply_to_email": "help@example.com", "data.reply_to_name": "Help",
		"data.oauth_email": nil, "data.has_refresh_token": false,
		"data.quotas.per_hour.min": 5.0, "data.quotas.per_hour.max": 5.0,
		"data.quotas.per_day.min": 10.0, "data.quotas.per_day.max": 20.0,
		"data.quotas.per_second": nil, "data.quotas.per_minute": nil,
		"data.percentage": 40.0, "data.group_id": nil, "data.tracking_domain": "links.example.com",
		"data.health.state": "closed", "data.created_at": "2026-03-01T12:00:00Z", "data.updated_at": "2026-03-01T12:00:00Z",
		"data.last_tested_at": nil, "data.last_used_at": nil,
	}
	for path, v := range want {
		if got := r.get(path); got != v {
			t.Errorf("%s = %#v, want %#v", path, got, v)
		}
	}
	// Every SPEC §3 ProviderItem field is present, even when null.
	for _, f := range []string{"id", "name", "type", "status", "status_reason", "is_active", "is_shared", "is_editable",
		"allowed_actions", "smtp_host", "smtp_port", "smtp_protocol", "smtp_username", "has_smtp_password",
		"from_email", "from_name", "reply_to_email", "reply_to_name", "oauth_email", "has_refresh_token",
		"quotas", "percentage", "group_id", "tracking_domain", "health", "created_at", "updated_at",
		"last_tested_at", "last_used_at"} {
		if _, ok := r.get("data").(map[string]any)[f]; !ok {
			t.Errorf("field %s missing", f)
		}
	}
	// The password is stored sealed and opens to what was sent.
	p, err := e.st.Provider(id)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := e.sealer.Open(p.SMTPPasswordSealed); err != nil || pw != "s3cret-Upstream-PW" {
		t.Fatalf("sealed password opens to %q, %v", pw, err)
	}
	if strings.Contains(string(p.SMTPPasswordSealed), "s3cret") {
		t.Fatal("password stored in clear")
	}

	g := e.do("GET", "/api/v1/providers/"+id, nil)
	if g.Code != 200 || g.Header.Get("ETag") != `W/"1"` || g.str("data.id") != id || g.get("data.has_smtp_password") != true {
		t.Fatalf("get: %d %v %s", g.Code, g.Header, g.Body)
	}
	// Defaults: type smtp, protocol starttls, no percentage.
	d := e.do("POST", "/api/v1/providers", map[string]any{"name": "Min", "smtp_host": "93.184.216.34", "smtp_port": 25})
	if d.Code != 201 || d.str("data.type") != "smtp" || d.str("data.smtp_protocol") != "starttls" ||
		d.get("data.percentage") != nil || d.get("data.has_smtp_password") != false || d.get("data.smtp_username") != nil {
		t.Fatalf("defaults: %s", d.Body)
	}
}

func TestManagedAccount(t *testing.T) {
	e := newEnv(t)
	path := "/api/v1/providers/" + e.managed.ID
	r := e.do("GET", path, nil)
	if r.Code != 200 || r.get("data.is_shared") != true || r.get("data.is_editable") != false ||
		r.str("data.type") != "amazon_ses" || r.get("data.allowed_actions.update") != false ||
		r.get("data.allowed_actions.delete") != false || r.get("data.allowed_actions.test") != false {
		t.Fatalf("managed item: %s", r.Body)
	}
	expectErr(t, e.do("PATCH", path, map[string]any{"name": "mine"}), 422, "validation_error", "")
	expectErr(t, e.do("PATCH", path, map[string]any{"quotas": map[string]any{"per_day": 1000}}), 422, "validation_error", "")
	expectErr(t, e.do("DELETE", path, nil), 422, "validation_error", "")
	expectErr(t, e.do("POST", path+"/test", nil), 422, "validation_error", "")
	if len(e.tester.calls) != 0 {
		t.Fatal("tester called for the managed account")
	}
	if r := e.do("POST", path+"/deactivate", nil); r.Code != 200 || r.str("data.status") != "inactive" || r.get("data.is_active") != false {
		t.Fatalf("deactivate: %s", r.Body)
	}
	if r := e.do("POST", path+"/activate", nil); r.Code != 200 || r.str("data.status") != "active" {
		t.Fatalf("activate: %s", r.Body)
	}
	if p, _ := e.st.Provider(e.managed.ID); p.Name != e.managed.Name {
		t.Fatal("managed account was edited")
	}
}

func TestPatchProvider(t *testing.T) {
	e := newEnv(t)
	body := validSMTP()
	body["quotas"] = map[string]any{"per_hour": 50, "per_day": 500}
	body["from_email"] = "a@example.com"
	id := e.createProvider(body)
	path := "/api/v1/providers/" + id
	sealed := func() []byte { p, _ := e.st.Provider(id); return p.SMTPPasswordSealed }
	orig := sealed()

	// Partial: only the sent fields change; null clears one quota; a
	// blank password keeps the stored one.
	e.clock.Advance(time.Minute)
	r := e.do("PATCH", path, map[string]any{"name": "Renamed", "quotas": map[string]any{"per_hour": nil}, "smtp_password": ""})
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	if r.str("data.name") != "Renamed" || r.get("data.quotas.per_hour") != nil || r.get("data.quotas.per_day.max") != 500.0 ||
		r.str("data.smtp_host") != "smtp.example.com" || r.str("data.from_email") != "a@example.com" ||
		r.get("data.has_smtp_password") != true || r.str("data.updated_at") != "2026-03-01T12:01:00Z" ||
		r.str("data.created_at") != "2026-03-01T12:00:00Z" || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("after patch: %v %s", r.Header, r.Body)
	}
	if string(sealed()) != string(orig) {
		t.Fatal("blank password changed the stored password")
	}

	// A new password replaces it; null removes it.
	e.secret("an0ther-Upstream-PW")
	if r := e.do("PATCH", path, map[string]any{"smtp_password": "an0ther-Upstream-PW"}); r.Code != 200 {
		t.Fatal(r.Body)
	}
	if pw, _ := e.sealer.Open(sealed()); pw != "an0ther-Upstream-PW" {
		t.Fatalf("password now %q", pw)
	}
	if r := e.do("PATCH", path, map[string]any{"smtp_password": nil}); r.get("data.has_smtp_password") != false || sealed() != nil {
		t.Fatalf("null password: %s", r.Body)
	}
	// quotas: null clears every window; a range replaces one.
	r = e.do("PATCH", path, map[string]any{"quotas": nil})
	for _, w := range quotaWindows {
		if r.get("data.quotas."+w) != nil {
			t.Fatalf("quotas not cleared: %s", r.Body)
		}
	}
	r = e.do("PATCH", path, map[string]any{"quotas": map[string]any{"per_minute": map[string]any{"min": 2, "max": 4}}, "percentage": nil})
	if r.get("data.quotas.per_minute.min") != 2.0 || r.get("data.quotas.per_minute.max") != 4.0 || r.get("data.percentage") != nil {
		t.Fatalf("range: %s", r.Body)
	}
	// Optional strings clear with "" or null.
	r = e.do("PATCH", path, map[string]any{"from_email": nil, "smtp_username": ""})
	if r.get("data.from_email") != nil || r.get("data.smtp_username") != nil {
		t.Fatalf("clear: %s", r.Body)
	}

	// Validation on PATCH: required fields cannot be removed, types are
	// fixed, nothing is written on failure.
	before, _ := e.st.Provider(id)
	for _, tc := range []struct {
		body   map[string]any
		status int
		field  string
	}{
		{map[string]any{"smtp_host": nil}, 422, "smtp_host"},
		{map[string]any{"smtp_host": ""}, 422, "smtp_host"},
		{map[string]any{"smtp_port": nil}, 422, "smtp_port"},
		{map[string]any{"name": nil}, 422, "name"},
		{map[string]any{"type": "ses"}, 422, "type"},
		{map[string]any{"smtp_port": 70000, "name": "ok"}, 422, "smtp_port"},
		{map[string]any{"percentage": -5}, 422, "percentage"},
		{map[string]any{"quotas": map[string]any{"per_day": 0}}, 422, "quotas.per_day"},
		{map[string]any{"group_id": "dgrp_000000000000000000000000"}, 422, "group_id"},
		{map[string]any{"status": "active"}, 400, "status"},
	} {
		code := "validation_error"
		if tc.status == 400 {
			code = "invalid_parameter"
		}
		expectErr(t, e.do("PATCH", path, tc.body), tc.status, code, tc.field)
	}
	if after, _ := e.st.Provider(id); after.Version != before.Version || after.Name != before.Name {
		t.Fatal("failed PATCH wrote")
	}
	// Same type and empty body are accepted; {} does not bump the version.
	if r := e.do("PATCH", path, map[string]any{"type": "smtp"}); r.Code != 200 {
		t.Fatal(r.Body)
	}
	v := e.do("GET", path, nil).Header.Get("ETag")
	if r := e.do("PATCH", path, map[string]any{}); r.Code != 200 || r.Header.Get("ETag") != v {
		t.Fatalf("empty patch: %v %s", r.Header, r.Body)
	}
}

func TestETagIfMatch(t *testing.T) {
	e := newEnv(t)
	id := e.createProvider(validSMTP())
	path := "/api/v1/providers/" + id
	tag := e.do("GET", path, nil).Header.Get("ETag")
	if tag != `W/"1"` {
		t.Fatal(tag)
	}
	for _, stale := range []string{`W/"7"`, `"0"`, `garbage`, `W/"1x"`} {
		expectErr(t, e.do("PATCH", path, map[string]any{"name": "x"}, "If-Match", stale), 409, "conflict", "")
		expectErr(t, e.do("DELETE", path, nil, "If-Match", stale), 409, "conflict", "")
	}
	r := e.do("PATCH", path, map[string]any{"name": "v2"}, "If-Match", tag)
	if r.Code != 200 || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("%d %v", r.Code, r.Header)
	}
	// The old tag is now stale; a list with the current one matches; so
	// does "*" and the strong form.
	expectErr(t, e.do("PATCH", path, map[string]any{"name": "v3"}, "If-Match", tag), 409, "conflict", "")
	if r := e.do("PATCH", path, map[string]any{"name": "v3"}, "If-Match", `W/"9", W/"2"`); r.Code != 200 {
		t.Fatal(r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{"name": "v4"}, "If-Match", `*`); r.Code != 200 {
		t.Fatal(r.Body)
	}
	if r := e.do("PATCH", path, map[string]any{"name": "v5"}, "If-Match", `"4"`); r.Code != 200 {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("DELETE", path, nil, "If-Match", `W/"4"`), 409, "conflict", "")
	r = e.do("DELETE", path, nil, "If-Match", `W/"5"`)
	if r.Code != 200 || r.get("data.deleted") != true || r.str("data.id") != id {
		t.Fatalf("delete: %s", r.Body)
	}
	expectErr(t, e.do("GET", path, nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", path, nil), 404, "not_found", "")
}

func TestActivateDeactivate(t *testing.T) {
	e := newEnv(t)
	id := e.createProvider(validSMTP())
	path := "/api/v1/providers/" + id
	r := e.do("POST", path+"/deactivate", nil)
	if r.str("data.status") != "inactive" || r.get("data.is_active") != false || r.get("data.allowed_actions.activate") != true ||
		r.get("data.allowed_actions.deactivate") != false || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("deactivate: %v %s", r.Header, r.Body)
	}
	// Idempotent, and a no-op does not create a version.
	if r := e.do("POST", path+"/deactivate", nil); r.Code != 200 || r.Header.Get("ETag") != `W/"2"` {
		t.Fatalf("again: %v", r.Header)
	}
	// Activate is the manual recovery from error: it clears the reason.
	if _, err := e.st.UpdateProvider(e.team.ID, id, 0, func(p *store.Provider) error {
		p.Status, p.StatusReason = state.ProviderError, "535 authentication failed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", path, nil); r.str("data.status_reason") != "535 authentication failed" {
		t.Fatal(r.Body)
	}
	r = e.do("POST", path+"/activate", nil)
	if r.str("data.status") != "active" || r.get("data.status_reason") != nil || r.get("data.is_active") != true {
		t.Fatalf("activate: %s", r.Body)
	}
	// Filters see the change.
	if r := e.do("GET", "/api/v1/providers?status=active&type=smtp", nil); len(r.get("data").([]any)) != 1 {
		t.Fatal(r.Body)
	}
}

func TestTestProvider(t *testing.T) {
	e := newEnv(t)
	id := e.createProvider(validSMTP())
	path := "/api/v1/providers/" + id
	setStatus := func(st state.Provider, reason string) {
		if _, err := e.st.UpdateProvider(e.team.ID, id, 0, func(p *store.Provider) error {
			p.Status, p.StatusReason = st, reason
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	status := func() (state.Provider, string) { p, _ := e.st.Provider(id); return p.Status, p.StatusReason }

	// Success clears a previous error and stamps last_tested_at.
	setStatus(state.ProviderError, "old failure")
	e.tester.fn = func(ctx context.Context, p *store.Provider) provhealth.TestResult {
		if p.ID != id || len(p.SMTPPasswordSealed) == 0 {
			t.Errorf("tester got %+v", p)
		}
		if _, ok := ctx.Deadline(); !ok {
			t.Error("no deadline on the test context")
		}
		return provhealth.TestResult{Outcome: provhealth.OK, Message: "221 Bye"}
	}
	e.clock.Advance(time.Hour)
	r := e.do("POST", path+"/test", nil)
	if r.Code != 200 || r.get("data.success") != true || r.str("data.message") != "221 Bye" ||
		r.str("data.tested_at") != "2026-03-01T13:00:00Z" || r.get("data.deferred") != false {
		t.Fatalf("success: %s", r.Body)
	}
	if _, ok := r.get("data.latency_ms").(float64); !ok {
		t.Fatalf("latency_ms: %s", r.Body)
	}
	if st, reason := status(); st != state.ProviderActive || reason != "" {
		t.Fatalf("after success: %s %q", st, reason)
	}
	if g := e.do("GET", path, nil); g.str("data.last_tested_at") != "2026-03-01T13:00:00Z" {
		t.Fatal(g.Body)
	}

	// Success on an inactive provider does not switch it on.
	setStatus(state.ProviderInactive, "")
	e.do("POST", path+"/test", nil)
	if st, _ := status(); st != state.ProviderInactive {
		t.Fatalf("inactive became %s", st)
	}

	// A definite failure sets error with the reason.
	setStatus(state.ProviderActive, "")
	e.tester.fn = func(context.Context, *store.Provider) provhealth.TestResult {
		return provhealth.TestResult{Outcome: provhealth.Failed, Message: "535 5.7.8 Authentication credentials invalid"}
	}
	r = e.do("POST", path+"/test", nil)
	if r.Code != 200 || r.get("data.success") != false || !strings.Contains(r.str("data.message"), "535") {
		t.Fatalf("failure: %s", r.Body)
	}
	if st, reason := status(); st != state.ProviderError || !strings.Contains(reason, "535 5.7.8") {
		t.Fatalf("after failure: %s %q", st, reason)
	}
	// A failure without a message gets a generic one.
	e.tester.fn = func(context.Context, *store.Provider) provhealth.TestResult {
		return provhealth.TestResult{Outcome: provhealth.Failed}
	}
	if r := e.do("POST", path+"/test", nil); r.str("data.message") != "connection failed" {
		t.Fatal(r.Body)
	}

	// Long upstream answers are cut, on a rune boundary.
	e.tester.fn = func(context.Context, *store.Provider) provhealth.TestResult {
		return provhealth.TestResult{Outcome: provhealth.Failed, Message: strings.Repeat("é", 400)}
	}
	r = e.do("POST", path+"/test", nil)
	if _, reason := status(); len(reason) > maxReasonLen+len("…") || !strings.HasSuffix(reason, "…") || !utf8.ValidString(reason) {
		t.Fatalf("reason not truncated: %d %q", len(reason), reason)
	}

	// A deferred test (a timeout, an upstream's "not now"): the old
	// status stays.
	setStatus(state.ProviderActive, "")
	e.tester.fn = func(context.Context, *store.Provider) provhealth.TestResult {
		return provhealth.TestResult{Outcome: provhealth.Deferred, Message: "connection failed"}
	}
	r = e.do("POST", path+"/test", nil)
	if r.get("data.success") != false || r.get("data.deferred") != true {
		t.Fatalf("deferred: %s", r.Body)
	}
	if st, _ := status(); st != state.ProviderActive {
		t.Fatalf("a deferred test changed status to %s", st)
	}

	// An edit during the test keeps the verdict off the new settings.
	setStatus(state.ProviderActive, "")
	e.tester.fn = func(context.Context, *store.Provider) provhealth.TestResult {
		if _, err := e.st.UpdateProvider(e.team.ID, id, 0, func(p *store.Provider) error { p.SMTPPort = 2525; return nil }); err != nil {
			t.Error(err)
		}
		return provhealth.TestResult{Outcome: provhealth.Failed, Message: "535 bad"}
	}
	e.do("POST", path+"/test", nil)
	if st, _ := status(); st != state.ProviderActive {
		t.Fatalf("stale verdict applied: %s", st)
	}
}

func TestTestProviderWithoutTester(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Tester = nil })
	id := e.createProvider(validSMTP())
	expectErr(t, e.do("POST", "/api/v1/providers/"+id+"/test", nil), 503, "service_unavailable", "")
}

func TestProviderLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 2 })
	e.createProvider(validSMTP())
	e.createProvider(validSMTP())
	// The managed account does not count: two own providers fill it.
	expectErr(t, e.do("POST", "/api/v1/providers", validSMTP()), 409, "limit_exceeded", "")
	// A team override wins over the default.
	three := 3
	e.team.ProviderLimit = &three
	if err := e.st.PutTeam(e.team); err != nil {
		t.Fatal(err)
	}
	e.createProvider(validSMTP())
	expectErr(t, e.do("POST", "/api/v1/providers", validSMTP()), 409, "limit_exceeded", "")
}

func TestProviderLimitConcurrent(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 5 })
	codes := make(chan int, 20)
	for i := 0; i < 20; i++ {
		go func() {
			codes <- e.do("POST", "/api/v1/providers", validSMTP()).Code
		}()
	}
	created := 0
	for i := 0; i < 20; i++ {
		if <-codes == 201 {
			created++
		}
	}
	if created != 5 {
		t.Fatalf("created %d, limit 5", created)
	}
}

// TestProviderCreateDoesNotWaitForOtherTeams: a create under way for one
// team (its lock held, as during its count and commit) does not hold up
// another team's create. TestProviderLimitConcurrent shows that the same
// team's creates still wait for each other.
func TestProviderCreateDoesNotWaitForOtherTeams(t *testing.T) {
	e := newEnv(t)
	other, _, _ := e.provision("other")
	unlock := e.srv.providerLocks.lock(other.ID)
	defer unlock()
	done := make(chan *resp, 1)
	go func() { done <- e.do("POST", "/api/v1/providers", validSMTP()) }()
	select {
	case r := <-done:
		if r.Code != 201 {
			t.Fatalf("create: %d %s", r.Code, r.Body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a team's POST /providers waited for another team's create")
	}
}

func TestListProvidersPagination(t *testing.T) {
	e := newEnv(t)
	want := []string{e.managed.ID}
	for i := 0; i < 6; i++ { // IDs order by creation, within a millisecond too (store.NewID)
		b := validSMTP()
		b["name"] = fmt.Sprintf("p%d", i)
		want = append(want, e.createProvider(b))
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		r := e.do("GET", "/api/v1/providers?limit=3"+cursor, nil)
		items := r.get("data").([]any)
		for _, it := range items {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		if r.get("pagination.has_more") != true {
			if r.get("pagination.next_cursor") != nil {
				t.Fatalf("last page with cursor: %s", r.Body)
			}
			break
		}
		if len(items) != 3 {
			t.Fatalf("short page with has_more: %s", r.Body)
		}
		cursor = "&cursor=" + r.str("pagination.next_cursor")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged %v\nwant   %v", got, want)
	}
	// Filters.
	if r := e.do("GET", "/api/v1/providers?type=amazon_ses", nil); len(r.get("data").([]any)) != 1 || r.str("data.0.id") != e.managed.ID {
		t.Fatal(r.Body)
	}
	if r := e.do("GET", "/api/v1/providers?status=error", nil); len(r.get("data").([]any)) != 0 {
		t.Fatal(r.Body)
	}
	expectErr(t, e.do("GET", "/api/v1/providers?status=broken", nil), 400, "invalid_parameter", "status")
	expectErr(t, e.do("GET", "/api/v1/providers?type=smtp2", nil), 400, "invalid_parameter", "type")
}

func TestHealthOption(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Providers.Health = func(id string) provhealth.Snapshot { return provhealth.Snapshot{State: "open", RecentFailures: 3} }
	})
	r := e.do("GET", "/api/v1/providers/"+e.managed.ID, nil)
	if r.str("data.health.state") != "open" || r.get("data.health.recent_failures") != 3.0 {
		t.Fatal(r.Body)
	}
}
