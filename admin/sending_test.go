package admin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/store"
)

func TestSendBuildsMIME(t *testing.T) {
	e, fs := newSendEnv(t)
	body := validSend()
	body["cc"] = []any{map[string]any{"email": "cc1@example.org", "name": "C One"}}
	body["bcc"] = []any{map[string]any{"email": "hidden@example.org"}}
	body["reply_to"] = map[string]any{"email": "support@example.com"}
	body["return_path"] = "bounces@example.com"
	body["custom_headers"] = map[string]any{"X-Campaign": "spring", "X-Note": "café"}
	pdf := []byte("%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n")
	body["attachments"] = []any{map[string]any{"filename": "invoice.pdf", "content": base64.StdEncoding.EncodeToString(pdf)}}
	r := e.send("/api/v1/emails/send", body)
	if r.Code != 200 || r.str("data.status") != "queued" || !store.ValidID(store.PrefixMessage, r.str("data.message_id")) {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	subs := fs.submitted()
	if len(subs) != 1 || subs[0].id != r.str("data.message_id") {
		t.Fatalf("submissions %+v", subs)
	}
	sub := subs[0]
	if sub.from != "bounces@example.com" || strings.Join(sub.rcpts, ",") != "user@example.net,cc1@example.org,hidden@example.org" {
		t.Fatalf("envelope %q %v", sub.from, sub.rcpts)
	}
	if sub.cred.Kind != store.CredKindKey || sub.cred.ID != "key_sendingkey00000000000000" {
		t.Fatalf("credential not passed through: %+v", sub.cred)
	}
	pm := parseMail(t, sub.body)
	h := pm.header
	from, _ := h.AddressList("From")
	to, _ := h.AddressList("To")
	cc, _ := h.AddressList("Cc")
	rt, _ := h.AddressList("Reply-To")
	subj, _ := h.Subject()
	note, _ := h.Text("X-Note")
	mid, _ := h.MessageID()
	if len(from) != 1 || from[0].Address != "app@example.com" || from[0].Name != "Example App" ||
		len(to) != 1 || to[0].Name != "Ünïcode User" || len(cc) != 1 || cc[0].Address != "cc1@example.org" ||
		len(rt) != 1 || rt[0].Address != "support@example.com" || subj != "Hello there" ||
		h.Get("X-Campaign") != "spring" || note != "café" || !strings.HasSuffix(mid, "@mx.smtpmux.test") {
		t.Fatalf("headers: %v", h.Header)
	}
	if h.Has("Bcc") || strings.Contains(string(sub.body), "hidden@") {
		t.Fatal("Bcc leaked into the message")
	}
	if d, err := h.Date(); err != nil || !d.Equal(e.clock.Now()) {
		t.Fatalf("date %v %v", d, err)
	}
	if ct, _, _ := h.ContentType(); ct != "multipart/mixed" {
		t.Fatalf("content type %s", ct)
	}
	if got := string(pm.part(t, "text/plain").body); got != "Hello there\r\nSecond line" {
		t.Fatalf("text %q", got)
	}
	if got := string(pm.part(t, "text/html").body); got != "<p>Hello <b>there</b></p>" {
		t.Fatalf("html %q", got)
	}
	att := pm.part(t, "application/pdf")
	if att.filename != "invoice.pdf" || string(att.body) != string(pdf) {
		t.Fatalf("attachment %+v", att)
	}
}

func TestSendShapes(t *testing.T) {
	e, fs := newSendEnv(t)
	for _, tc := range []struct {
		name       string
		html, text string
		want       string
	}{
		{"text only", "", "plain", "text/plain"},
		{"html only", "<p>x</p>", "", "text/html"},
		{"both", "<p>x</p>", "x", "multipart/alternative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := validSend()
			delete(b, "html_body")
			delete(b, "text_body")
			if tc.html != "" {
				b["html_body"] = tc.html
			}
			if tc.text != "" {
				b["text_body"] = tc.text
			}
			if r := e.send("/api/v1/emails/send", b); r.Code != 200 {
				t.Fatalf("%d %s", r.Code, r.Body)
			}
			subs := fs.submitted()
			pm := parseMail(t, subs[len(subs)-1].body)
			if ct, params, _ := pm.header.ContentType(); ct != tc.want || (ct != "multipart/alternative" && params["charset"] != "utf-8") {
				t.Fatalf("content type %s %v", ct, params)
			}
		})
	}
}

func TestSendAuth(t *testing.T) {
	e, fs := newSendEnv(t)
	body := validSend()
	expectErr(t, e.do("POST", "/api/v1/emails/send", body, "Authorization", ""), 401, "authentication_required", "")
	expectErr(t, e.do("POST", "/api/v1/emails/send", body, "Authorization", "Bearer smx_mbx_wrong-wrong-wrong-wrong"), 401, "authentication_required", "")
	// The team's root key is recognised and refused with 403; a revoked or
	// unknown root key is a 401.
	expectErr(t, e.do("POST", "/api/v1/emails/send", body), 403, "insufficient_permissions", "")
	expectErr(t, e.do("POST", "/api/v1/emails/send", body, "Authorization", "Bearer "+store.NewSecret(store.SecretPrefixRoot)), 401, "authentication_required", "")
	// A sending key cannot use the Management API.
	fs.limited = true
	r := e.send("/api/v1/emails/send", body)
	expectErr(t, r, 429, "rate_limit_exceeded", "")
	if r.Header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	fs.limited = false
	// Mailbox passwords must send as the mailbox.
	r = e.do("POST", "/api/v1/emails/send", body, "Authorization", "Bearer "+testMailboxPass)
	expectErr(t, r, 422, "validation_error", "from.email")
	b := validSend()
	b["from"] = map[string]any{"email": testMailboxAddr}
	b["return_path"] = "other@example.com"
	expectErr(t, e.do("POST", "/api/v1/emails/send", b, "Authorization", "Bearer "+testMailboxPass), 422, "validation_error", "return_path")
	delete(b, "return_path")
	if r := e.do("POST", "/api/v1/emails/send", b, "Authorization", "Bearer "+testMailboxPass); r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	if n := len(fs.submitted()); n != 1 {
		t.Fatalf("%d submissions, want 1", n)
	}
}

func TestSendSenderErrors(t *testing.T) {
	e, fs := newSendEnv(t)
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{senderr.ErrNoActiveProviders, 503, "no_active_providers"},
		{senderr.ErrDailyLimit, 429, "daily_limit_exceeded"},
		{senderr.ErrHourlyLimit, 422, "validation_error"},
		{senderr.ErrAuthUnavailable, 503, "service_unavailable"},
		{senderr.ErrLimitsUnavailable, 503, "service_unavailable"},
		{senderr.ErrBadCredential, 401, "authentication_required"},
		{senderr.ErrSenderNotMailbox, 422, "validation_error"},
		{senderr.ErrBadAddress, 422, "validation_error"},
		{senderr.ErrEmptyMessage, 422, "validation_error"},
		{errors.New("disk on fire"), 500, "internal_error"},
		// A full disk is said as such (nothing was queued, retry later),
		// without the path or the OS error text.
		{&os.PathError{Op: "write", Path: "/var/lib/smtpmux/spool/eml_x", Err: syscall.ENOSPC}, 503, "service_unavailable"},
		{fmt.Errorf("commit: %w", syscall.EDQUOT), 503, "service_unavailable"},
	} {
		fs.fail = func(int) error { return tc.err }
		r := e.send("/api/v1/emails/send", validSend())
		expectErr(t, r, tc.status, tc.code, "")
		if tc.status == 503 && r.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		for _, leak := range []string{"disk on fire", "/var/lib", "no space left", "quota exceeded"} {
			if strings.Contains(r.Body, leak) {
				t.Fatalf("internal error detail %q leaked: %s", leak, r.Body)
			}
		}
		if tc.status == 503 && tc.code == "service_unavailable" && tc.err != senderr.ErrAuthUnavailable && tc.err != senderr.ErrLimitsUnavailable && !strings.Contains(r.Body, "out of storage space") {
			t.Fatalf("a full disk is not named: %s", r.Body)
		}
	}
}

// TestSendBadInput walks every field's bad values: each answers its code
// naming the field, and nothing reaches the relay.
func TestSendBadInput(t *testing.T) {
	e, fs := newSendEnv(t)
	exe := base64.StdEncoding.EncodeToString(append([]byte("MZ\x90\x00\x03\x00\x00\x00"), make([]byte, 64)...))
	okAtt := func(m map[string]any) []any {
		a := map[string]any{"filename": "a.txt", "content": base64.StdEncoding.EncodeToString([]byte("hello"))}
		for k, v := range m {
			a[k] = v
		}
		return []any{a}
	}
	addrs := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = map[string]any{"email": "r" + strings.Repeat("x", i%5) + "@example.org"}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		mod    func(map[string]any)
		status int
		code   string
		field  string
	}{
		{"unknown field", func(b map[string]any) { b["priority"] = "high" }, 400, "invalid_parameter", "priority"},
		{"from missing", func(b map[string]any) { delete(b, "from") }, 422, "validation_error", "from"},
		{"from number", func(b map[string]any) { b["from"] = 42 }, 400, "invalid_parameter", "from"},
		{"from bad string", func(b map[string]any) { b["from"] = "not an address" }, 422, "validation_error", "from"},
		{"from.email bad", func(b map[string]any) { b["from"] = map[string]any{"email": "nope"} }, 422, "validation_error", "from.email"},
		{"from.email missing", func(b map[string]any) { b["from"] = map[string]any{"name": "x"} }, 422, "validation_error", "from.email"},
		{"from.email display", func(b map[string]any) { b["from"] = map[string]any{"email": "A <a@example.com>"} }, 422, "validation_error", "from.email"},
		{"from.name newline", func(b map[string]any) {
			b["from"] = map[string]any{"email": "a@example.com", "name": "a\r\nBcc: x@y.z"}
		}, 422, "validation_error", "from.name"},
		{"from.name long", func(b map[string]any) { b["from"] = map[string]any{"email": "a@example.com", "name": repeat("n", 101)} }, 422, "validation_error", "from.name"},
		{"from extra", func(b map[string]any) { b["from"] = map[string]any{"email": "a@example.com", "x": 1} }, 400, "invalid_parameter", "from.x"},
		{"from.email number", func(b map[string]any) { b["from"] = map[string]any{"email": 5} }, 400, "invalid_parameter", "from.email"},
		{"to missing", func(b map[string]any) { delete(b, "to") }, 422, "validation_error", "to"},
		{"to list of two", func(b map[string]any) { b["to"] = []any{"a@example.com", "b@example.com"} }, 422, "validation_error", "to"},
		{"to.email bad", func(b map[string]any) { b["to"] = map[string]any{"email": "a@@example.com"} }, 422, "validation_error", "to.email"},
		{"subject missing", func(b map[string]any) { delete(b, "subject") }, 422, "validation_error", "subject"},
		{"subject empty", func(b map[string]any) { b["subject"] = "" }, 422, "validation_error", "subject"},
		{"subject long", func(b map[string]any) { b["subject"] = repeat("s", 999) }, 422, "validation_error", "subject"},
		{"subject crlf", func(b map[string]any) { b["subject"] = "hi\r\nBcc: x@example.com" }, 422, "validation_error", "subject"},
		{"subject number", func(b map[string]any) { b["subject"] = 7 }, 400, "invalid_parameter", "subject"},
		{"no body", func(b map[string]any) { delete(b, "html_body"); delete(b, "text_body") }, 422, "validation_error", "html_body"},
		{"html number", func(b map[string]any) { b["html_body"] = 1 }, 400, "invalid_parameter", "html_body"},
		{"text NUL", func(b map[string]any) { b["text_body"] = "a\x00b" }, 422, "validation_error", "text_body"},
		{"cc too many", func(b map[string]any) { b["cc"] = addrs(50) }, 422, "validation_error", "cc"},
		{"bcc too many", func(b map[string]any) { b["bcc"] = addrs(50) }, 422, "validation_error", "bcc"},
		{"cc+bcc over 50", func(b map[string]any) { b["cc"] = addrs(25); b["bcc"] = addrs(25) }, 422, "validation_error", "bcc"},
		{"cc email bad", func(b map[string]any) { b["cc"] = []any{map[string]any{"email": "x"}} }, 422, "validation_error", "cc[0].email"},
		{"cc number", func(b map[string]any) { b["cc"] = []any{7} }, 400, "invalid_parameter", "cc[0]"},
		{"cc object", func(b map[string]any) { b["cc"] = map[string]any{"email": "a@example.com"} }, 400, "invalid_parameter", "cc"},
		{"bcc name newline", func(b map[string]any) { b["bcc"] = []any{map[string]any{"email": "a@example.com", "name": "a\nb"}} }, 422, "validation_error", "bcc[0].name"},
		{"reply_to bad", func(b map[string]any) { b["reply_to"] = map[string]any{"email": "bad"} }, 422, "validation_error", "reply_to.email"},
		{"return_path bad", func(b map[string]any) { b["return_path"] = "not an address" }, 422, "validation_error", "return_path"},
		{"header not X", func(b map[string]any) { b["custom_headers"] = map[string]any{"Subject": "x"} }, 422, "validation_error", "custom_headers.Subject"},
		{"header injection", func(b map[string]any) { b["custom_headers"] = map[string]any{"X-A": "a\r\nBcc: x@example.com"} }, 422, "validation_error", "custom_headers.X-A"},
		{"header bad name", func(b map[string]any) { b["custom_headers"] = map[string]any{"X-A B": "a"} }, 422, "validation_error", "custom_headers.X-A B"},
		{"header long", func(b map[string]any) { b["custom_headers"] = map[string]any{"X-A": repeat("v", 501)} }, 422, "validation_error", "custom_headers.X-A"},
		{"header number", func(b map[string]any) { b["custom_headers"] = map[string]any{"X-A": 5} }, 400, "invalid_parameter", "custom_headers.X-A"},
		{"headers array", func(b map[string]any) { b["custom_headers"] = []any{"X-A: b"} }, 400, "invalid_parameter", "custom_headers"},
		{"attachments 11", func(b map[string]any) {
			b["attachments"] = append(append(okAtt(nil), okAtt(nil)...), make([]any, 9)...)
		}, 422, "validation_error", "attachments"},
		{"attachment no filename", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"filename": ""}) }, 422, "validation_error", "attachments[0].filename"},
		{"attachment path", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"filename": "../etc/passwd"}) }, 422, "validation_error", "attachments[0].filename"},
		{"attachment RLO name", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"filename": "report\u202Etxt.pdf"}) }, 422, "validation_error", "attachments[0].filename"},
		{"attachment zero-width name", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"filename": "a\u200b.txt"}) }, 422, "validation_error", "attachments[0].filename"},
		{"attachment LRI name", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"filename": "a\u2066.txt"}) }, 422, "validation_error", "attachments[0].filename"},
		{"from.name RLO", func(b map[string]any) {
			b["from"] = map[string]any{"email": "a@example.com", "name": "Bob \u202Emoc.knab"}
		}, 422, "validation_error", "from.name"},
		{"to.name line separator", func(b map[string]any) { b["to"] = map[string]any{"email": "a@example.com", "name": "a\u2028b"} }, 422, "validation_error", "to.name"},
		{"attachment exe name", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"filename": "invoice.pdf.exe"}) }, 422, "validation_error", "attachments[0].filename"},
		{"attachment exe content", func(b map[string]any) {
			b["attachments"] = okAtt(map[string]any{"filename": "invoice.pdf", "content": exe})
		}, 422, "validation_error", "attachments[0].content"},
		{"attachment not base64", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"content": "%%%"}) }, 422, "validation_error", "attachments[0].content"},
		{"attachment empty", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"content": ""}) }, 422, "validation_error", "attachments[0].content"},
		{"attachment encoding", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"encoding": "hex"}) }, 422, "validation_error", "attachments[0].encoding"},
		{"attachment type", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"type": "multipart/mixed"}) }, 422, "validation_error", "attachments[0].type"},
		{"attachment bad type", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"type": "pdf"}) }, 422, "validation_error", "attachments[0].type"},
		{"attachment id", func(b map[string]any) { b["attachments"] = []any{map[string]any{"attachment_id": "att_x"}} }, 422, "validation_error", "attachments[0].attachment_id"},
		{"attachment extra", func(b map[string]any) { b["attachments"] = okAtt(map[string]any{"size": 5}) }, 400, "invalid_parameter", "attachments[0].size"},
		{"content over 25 MB", func(b map[string]any) { b["html_body"] = repeat("x", 25<<20) }, 413, "payload_too_large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := validSend()
			tc.mod(b)
			expectErr(t, e.send("/api/v1/emails/send", b), tc.status, tc.code, tc.field)
		})
	}
	for _, raw := range []string{``, `[]`, `null`, `{`, `"x"`} {
		expectErr(t, e.send("/api/v1/emails/send", raw), 400, "invalid_parameter", "")
	}
	if n := len(fs.submitted()); n != 0 {
		t.Fatalf("bad input reached the relay %d times", n)
	}
}

func TestSendBodyLimit(t *testing.T) {
	e, fs := newSendEnv(t)
	req := httptest.NewRequest("POST", "/api/v1/emails/send", strings.NewReader(`{"x":"`+repeat("a", 35<<20)+`"}`))
	req.Header.Set("Authorization", "Bearer "+testSendKey)
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	r := &resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
	checkEnvelope(t, nil, "POST", "/api/v1/emails/send", r)
	expectErr(t, r, 413, "payload_too_large", "")
	// A body above the Management API's 1 MiB is fine here.
	b := validSend()
	b["html_body"] = repeat("<p>big</p>", 200_000)
	if r := e.send("/api/v1/emails/send", b); r.Code != 200 {
		t.Fatalf("2 MB send: %d %.300s", r.Code, r.Body)
	}
	if len(fs.submitted()) != 1 {
		t.Fatal("large send not submitted")
	}
}

func TestSendDisabledWithoutSender(t *testing.T) {
	e := newEnv(t)
	expectErr(t, e.do("POST", "/api/v1/emails/send", validSend(), "Authorization", "Bearer "+testSendKey), 503, "service_unavailable", "")
}

// FuzzSendBodies throws arbitrary bodies at the Sending API's decoding and
// validation: whatever the input, the answer is a well-formed envelope,
// never a 5xx or a panic, and a 200 means the MIME message parses.
func FuzzSendBodies(f *testing.F) {
	for _, seed := range []string{
		`{"from":{"email":"a@example.com"},"to":{"email":"b@example.net"},"subject":"s","text_body":"t"}`,
		`{"from":{"email":"a@example.com","name":"=?utf-8?q?x?="},"to":{"email":"b@example.net"},"subject":"s","html_body":"<p>"}`,
		`{"from":{"email":"a@example.com"},"to":{"email":"b@example.net"},"subject":"s","text_body":"t","attachments":[{"filename":"a.txt","content":"aGk="}]}`,
		`{"custom_headers":{"X-A":"b"},"cc":[{"email":"c@example.org"}],"bcc":[]}`,
		`{"messages":[{}]}`, `{"subject":"\r\n"}`, `[]`, `null`, `{`, ``, `{"attachments":[{"content":"TVo="}]}`,
	} {
		f.Add(seed)
	}
	e, _ := newSendEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/api/v1/emails/send", "/api/v1/emails/send/batch"} {
			req := httptest.NewRequest("POST", path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testSendKey)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() { e.srv.ServeHTTP(rec, req); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s %q: no answer", path, body)
			}
			r := &resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
			checkEnvelope(t, nil, "POST", path, r)
			if r.Code >= 500 {
				t.Fatalf("%s %q: %d %s", path, body, r.Code, r.Body)
			}
		}
	})
}

func TestSendAcceptsAddressStrings(t *testing.T) {
	e, _ := newSendEnv(t)
	r := e.send("/api/v1/emails/send", map[string]any{"from": "App <app@example.com>", "to": "user@example.net",
		"cc": []any{"c@example.net", map[string]any{"email": "d@example.net"}}, "subject": "s", "text_body": "b"})
	if r.Code != 200 {
		t.Fatalf("string addresses: %d %s", r.Code, r.Body)
	}
	r = e.send("/api/v1/emails/send", map[string]any{"from": "app@example.com", "to": "not an address", "subject": "s", "text_body": "b"})
	expectErr(t, r, 422, "validation_error", "to")
}
