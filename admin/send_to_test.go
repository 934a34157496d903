package admin

import (
	"strings"
	"testing"
)

// TestSendToForms: "to" is one address (SPEC §4) given as a string, an
// {email,name} object or a list of exactly one of these; a longer or
// empty list is a 422 naming cc/bcc, and a value of another type is a
// 400 whose message lists the accepted forms.
func TestSendToForms(t *testing.T) {
	e, fs := newSendEnv(t)
	for i, to := range []any{
		"user@example.net",
		map[string]any{"email": "user@example.net"},
		[]any{"user@example.net"},
		[]any{"User <user@example.net>"},
		[]any{map[string]any{"email": "user@example.net", "name": "User"}},
	} {
		r := e.send("/api/v1/emails/send", map[string]any{"from": "app@example.com", "to": to, "subject": "s", "text_body": "b"})
		if r.Code != 200 {
			t.Fatalf("to %#v: %d %s", to, r.Code, r.Body)
		}
		subs := fs.submitted()
		if len(subs) != i+1 || len(subs[i].rcpts) != 1 || subs[i].rcpts[0] != "user@example.net" {
			t.Fatalf("to %#v: submitted %+v", to, subs[len(subs)-1])
		}
	}
	for _, to := range []any{[]any{"a@example.net", "b@example.net"}, []any{}} {
		r := e.send("/api/v1/emails/send", map[string]any{"from": "app@example.com", "to": to, "subject": "s", "text_body": "b"})
		expectErr(t, r, 422, "validation_error", "to")
		if !strings.Contains(string(r.Body), "cc or bcc") {
			t.Fatalf("to %#v: %s", to, r.Body)
		}
	}
	for _, to := range []any{42, true, []any{42}} {
		r := e.send("/api/v1/emails/send", map[string]any{"from": "app@example.com", "to": to, "subject": "s", "text_body": "b"})
		expectErr(t, r, 400, "invalid_parameter", "to")
		if !strings.Contains(string(r.Body), "name@example.com") || strings.Contains(string(r.Body), "must be an object") {
			t.Fatalf("to %#v: %s", to, r.Body)
		}
	}
}
