package admin

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzProviderBodies throws arbitrary bodies at the JSON decoding and
// validation of the provider endpoints. Whatever the input, the answer must
// be a well-formed envelope with a 2xx/4xx status, never a 500 or a panic,
// and never contain the stored password.
func FuzzProviderBodies(f *testing.F) {
	for _, seed := range []string{
		`{"name":"a","smtp_host":"smtp.example.com","smtp_port":587}`,
		`{"name":"a","smtp_host":"::1","smtp_port":25,"quotas":{"per_hour":{"min":1,"max":2},"per_day":null}}`,
		`{"quotas":{"per_second":1.5}}`,
		`{"smtp_port":"25"}`,
		`{"type":"ses"}`,
		`{"percentage":-1,"from_email":"Bob <b@x>"}`,
		`{"smtp_password":null}`,
		`[]`, `null`, `{`, `{"a":1}`, ``, `{"name":"\u0000"}`,
	} {
		f.Add(seed)
	}
	e := newEnv(f, func(o *Options) { o.HTTP.RateLimit = 1 << 30 })
	const pw = "fuzz-Upstream-PW-123"
	b := validSMTP()
	b["smtp_password"] = pw
	id := e.createProvider(b)
	f.Fuzz(func(t *testing.T, body string) {
		for _, target := range []struct{ method, path string }{
			{"POST", "/api/v1/providers"},
			{"PATCH", "/api/v1/providers/" + id},
			{"POST", "/api/v1/api-keys"},
		} {
			req := httptest.NewRequest(target.method, target.path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.root)
			rec := httptest.NewRecorder()
			e.srv.ServeHTTP(rec, req)
			r := &resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
			checkEnvelope(t, []string{pw}, target.method, target.path, r)
			if r.Code >= 500 {
				t.Fatalf("%s %s %q: %d %s", target.method, target.path, body, r.Code, r.Body)
			}
		}
	})
}

// FuzzGroupAndMailboxBodies does the same for delivery groups, mailboxes
// and mailbox passwords, whose bodies carry nested send scopes.
func FuzzGroupAndMailboxBodies(f *testing.F) {
	for _, seed := range []string{
		`{"name":"g","description":"d"}`,
		`{"name":null,"description":null}`,
		`{"address":"a@example.com","display_name":"A","send_scope":{"type":"all"}}`,
		`{"address":"A@EXAMPLE.COM","send_scope":{"type":"group","group_public_ids":["dgrp_000000000000000000000000"]}}`,
		`{"send_scope":{"type":"providers","provider_public_ids":[1]}}`,
		`{"send_scope":null}`, `{"address":"Bob <b@x>"}`, `{"name":"\u0000"}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add(seed)
	}
	e := newEnv(f, func(o *Options) { o.HTTP.RateLimit = 1 << 30 })
	gid := e.createGroup("g")
	mid := e.createMailbox(map[string]any{"address": "fuzz@example.com"})
	f.Fuzz(func(t *testing.T, body string) {
		for _, target := range []struct{ method, path string }{
			{"POST", "/api/v1/delivery-groups"},
			{"PATCH", "/api/v1/delivery-groups/" + gid},
			{"POST", "/api/v1/mailboxes"},
			{"PATCH", "/api/v1/mailboxes/" + mid},
			{"POST", "/api/v1/mailboxes/" + mid + "/passwords"},
		} {
			req := httptest.NewRequest(target.method, target.path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.root)
			rec := httptest.NewRecorder()
			e.srv.ServeHTTP(rec, req)
			r := &resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
			checkEnvelope(t, nil, target.method, target.path, r)
			if r.Code >= 500 {
				t.Fatalf("%s %s %q: %d %s", target.method, target.path, body, r.Code, r.Body)
			}
		}
	})
}
