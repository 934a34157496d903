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

// A mailbox password's HTTP sends compare the sender with the mailbox
// under ASCII case folding only (hostile-tenant audit of issue 12): the
// local part may be UTF-8 to net/mail, and Unicode folding takes U+017F
// and U+212A for "s" and "k".
func TestSameMailboxASCIIFold(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"sk@allowed.com", true}, {"SK@Allowed.COM", true},
		{"\u017fk@allowed.com", false}, {"s\u212a@allowed.com", false}, {"sk@allowed.co", false},
	} {
		if got := sameMailbox(c.addr, "sk@allowed.com"); got != c.ok {
			t.Errorf("sameMailbox(%q) = %v, want %v", c.addr, got, c.ok)
		}
	}
}
