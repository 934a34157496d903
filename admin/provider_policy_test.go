package admin

import (
	"context"
	"testing"

	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// TestProviderHostPolicy: with the safe defaults a team cannot point a
// provider at the operator's network, whatever notation it writes, on
// create or on update; the operator's opt-in lets it.
func TestProviderHostPolicy(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 1000 })
	hostile := []string{"127.0.0.1", "127.0.0.1.", "::1", "[::1]", "[::ffff:127.0.0.1]", "::ffff:7f00:1",
		"0:0:0:0:0:0:0:1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "10.0.0.25", "192.168.1.10",
		"172.16.5.4", "169.254.169.254", "100.100.100.200", "0.0.0.0", "fe80::1", "fd00::25", "fec0::1",
		"64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2002:7f00:1::", "::127.0.0.1",
		"localhost", "LOCALHOST.", "mx.localhost", "mailhog", "metadata.google.internal", "relay.local"}
	for _, h := range hostile {
		body := validSMTP()
		body["smtp_host"] = h
		r := e.do("POST", "/api/v1/providers", body)
		expectErr(t, r, 422, "validation_error", "smtp_host")
		if r.str("error.errors.0.code") == "" {
			t.Fatalf("%s: no field code: %s", h, r.Body)
		}
	}
	id := e.createProvider(validSMTP())
	for _, h := range []string{"127.0.0.1", "localhost", "2130706433"} {
		expectErr(t, e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"smtp_host": h}), 422, "validation_error", "smtp_host")
	}
	// A host stored before the policy does not ride along on an edit.
	if _, err := e.st.UpdateProvider(e.team.ID, id, 0, func(p *store.Provider) error { p.SMTPHost = "127.0.0.1"; return nil }); err != nil {
		t.Fatal(err)
	}
	expectErr(t, e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"name": "renamed"}), 422, "validation_error", "smtp_host")
	if r := e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"smtp_host": "smtp.example.com"}); r.Code != 200 {
		t.Fatalf("fixing the host: %d %s", r.Code, r.Body)
	}

	open := newEnv(t, func(o *Options) { o.Providers.AllowPrivateHosts = true })
	for _, h := range []string{"127.0.0.1", "localhost", "10.0.0.25", "mailhog"} {
		body := validSMTP()
		body["smtp_host"] = h
		if r := open.do("POST", "/api/v1/providers", body); r.Code != 201 {
			t.Fatalf("opt-in %s: %d %s", h, r.Code, r.Body)
		}
	}
}

// TestSESProviderPolicy: a team's SES provider needs its own keys and an
// Amazon endpoint unless the operator opted in.
func TestSESProviderPolicy(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Providers.Limit = 1000 })
	keys := map[string]any{"ses_access_key_id": "AKIAEXAMPLEEXAMPLE01", "ses_secret_access_key": "secret/key"}
	ses := func(extra map[string]any) map[string]any {
		b := map[string]any{"name": "own ses", "type": "ses", "ses_region": "us-east-1"}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	with := func(a, b map[string]any) map[string]any {
		out := map[string]any{}
		for _, m := range []map[string]any{a, b} {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	expectErr(t, e.do("POST", "/api/v1/providers", ses(nil)), 422, "validation_error", "ses_access_key_id")
	for _, ep := range []string{"http://127.0.0.1:8005", "https://attacker.example.com", "http://email.us-east-1.amazonaws.com",
		"https://email.us-east-1.amazonaws.com.attacker.example", "https://[::1]:443", "https://email.us-east-1.amazonaws.com:8443"} {
		r := e.do("POST", "/api/v1/providers", ses(with(keys, map[string]any{"ses_endpoint": ep})))
		expectErr(t, r, 422, "validation_error", "ses_endpoint")
	}
	r := e.do("POST", "/api/v1/providers", ses(with(keys, map[string]any{"ses_endpoint": "https://email-fips.us-east-1.amazonaws.com"})))
	if r.Code != 201 {
		t.Fatalf("AWS endpoint: %d %s", r.Code, r.Body)
	}
	id := r.str("data.id")
	// Dropping the keys by PATCH is refused too.
	expectErr(t, e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"ses_access_key_id": "", "ses_secret_access_key": nil}),
		422, "validation_error", "ses_access_key_id")
	expectErr(t, e.do("PATCH", "/api/v1/providers/"+id, map[string]any{"ses_endpoint": "http://127.0.0.1:8005"}),
		422, "validation_error", "ses_endpoint")

	open := newEnv(t, func(o *Options) { o.Providers.SESDefaultCredentials = true; o.Providers.AllowPrivateHosts = true })
	if r := open.do("POST", "/api/v1/providers", ses(map[string]any{"ses_endpoint": "http://127.0.0.1:8005"})); r.Code != 201 {
		t.Fatalf("opt-in: %d %s", r.Code, r.Body)
	}
	// Each opt-in is its own: default credentials do not open endpoints.
	half := newEnv(t, func(o *Options) { o.Providers.SESDefaultCredentials = true })
	if r := half.do("POST", "/api/v1/providers", ses(nil)); r.Code != 201 {
		t.Fatalf("default credentials: %d %s", r.Code, r.Body)
	}
	expectErr(t, half.do("POST", "/api/v1/providers", ses(map[string]any{"ses_endpoint": "http://127.0.0.1:8005"})),
		422, "validation_error", "ses_endpoint")
}

// TestTestNeverChangesEnablement (issue 12 item 15): testing a provider the
// team switched off records the test and nothing else, whatever its
// outcome; on an enabled provider a failure sets error and a success
// clears it.
func TestTestNeverChangesEnablement(t *testing.T) {
	e := newEnv(t)
	id := e.createProvider(validSMTP())
	path := "/api/v1/providers/" + id
	status := func() state.Provider { p, _ := e.st.Provider(id); return p.Status }
	if r := e.do("POST", path+"/deactivate", nil); r.Code != 200 {
		t.Fatal(r.Body)
	}
	fail := func(context.Context, *store.Provider) provhealth.TestResult {
		return provhealth.TestResult{Outcome: provhealth.Failed, Message: "535 5.7.8 bad credentials"}
	}
	ok := func(context.Context, *store.Provider) provhealth.TestResult {
		return provhealth.TestResult{Outcome: provhealth.OK}
	}
	for _, fn := range []func(context.Context, *store.Provider) provhealth.TestResult{fail, ok, fail, ok} {
		e.tester.fn = fn
		r := e.do("POST", path+"/test", nil)
		if r.Code != 200 || r.str("data.tested_at") == "" {
			t.Fatalf("test: %d %s", r.Code, r.Body)
		}
		if st := status(); st != state.ProviderInactive {
			t.Fatalf("a test turned an inactive provider %s", st)
		}
	}
	if p, _ := e.st.Provider(id); p.LastTestedAt == nil {
		t.Fatal("the test was not recorded")
	}
	// Enabled: failure → error, success → active.
	e.do("POST", path+"/activate", nil)
	e.tester.fn = fail
	e.do("POST", path+"/test", nil)
	if st := status(); st != state.ProviderError {
		t.Fatalf("failed test on an active provider: %s", st)
	}
	e.tester.fn = ok
	e.do("POST", path+"/test", nil)
	if st := status(); st != state.ProviderActive {
		t.Fatalf("successful test on an errored provider: %s", st)
	}
}
