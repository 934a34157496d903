package admin

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/smtpmux/smtpmux/internal/senderr"
)

func TestBatchPartialSuccess(t *testing.T) {
	e, fs := newSendEnv(t)
	bad := validSend()
	bad["subject"] = ""
	unknown := validSend()
	unknown["bogus"] = true
	third := validSend()
	third["to"] = map[string]any{"email": "third@example.net"}
	r := e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{validSend(), bad, third, unknown}})
	if r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	for path, want := range map[string]any{
		"data.summary.total": 4.0, "data.summary.queued": 2.0, "data.summary.failed": 2.0,
		"data.results.0.index": 0.0, "data.results.0.status": "queued",
		"data.results.1.status": "failed", "data.results.1.message_id": nil,
		"data.results.1.error.code": "validation_error", "data.results.1.error.param": "subject",
		"data.results.1.error.retryable": false,
		"data.results.2.index":           2.0, "data.results.2.status": "queued",
		"data.results.3.error.code": "invalid_parameter", "data.results.3.error.param": "bogus",
	} {
		if got := r.get(path); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	subs := fs.submitted()
	if len(subs) != 2 || r.str("data.results.0.message_id") != subs[0].id || r.str("data.results.2.message_id") != subs[1].id ||
		subs[1].rcpts[0] != "third@example.net" {
		t.Fatalf("submissions %+v / %s", subs, r.Body)
	}
	// The whole batch counted once against the rate limit.
	if fs.allows != 1 {
		t.Fatalf("rate limit counted %d times", fs.allows)
	}
}

func TestBatchAllInvalidIs422(t *testing.T) {
	e, fs := newSendEnv(t)
	a, b := validSend(), validSend()
	a["subject"] = ""
	b["to"] = map[string]any{"email": "nope"}
	r := e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{a, b}})
	expectErr(t, r, 422, "validation_error", "messages[0].subject")
	if f := r.fields(); len(f) != 2 || f[1] != "messages[1].to.email" {
		t.Fatalf("fields %v", f)
	}
	if len(fs.submitted()) != 0 {
		t.Fatal("invalid batch submitted something")
	}
}

func TestBatchAllTransientIs503(t *testing.T) {
	e, fs := newSendEnv(t)
	fs.fail = func(int) error { return senderr.ErrNoActiveProviders }
	r := e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{validSend(), validSend()}})
	expectErr(t, r, 503, "no_active_providers", "")
	if r.get("error.retryable") != true || r.Header.Get("Retry-After") == "" {
		t.Fatalf("%v %s", r.Header, r.Body)
	}
	// A mix of invalid and transient failures, nothing queued: 503 too,
	// since a retry may succeed for some.
	bad := validSend()
	bad["subject"] = ""
	fs.fail = func(int) error { return senderr.ErrDailyLimit }
	r = e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{bad, validSend()}})
	expectErr(t, r, 503, "service_unavailable", "")
	if f := r.fields(); len(f) != 2 || f[0] != "messages[0].subject" || f[1] != "messages[1]" {
		t.Fatalf("fields %v", f)
	}
}

// TestBatchDiskFull: a full disk fails each message with a retryable 503
// that names it (not a generic internal error), and a batch that queued
// nothing is a 503.
func TestBatchDiskFull(t *testing.T) {
	e, fs := newSendEnv(t)
	fs.fail = func(n int) error {
		if n == 0 {
			return nil
		}
		return &os.PathError{Op: "write", Path: "/var/lib/smtpmux/smtpmux.db", Err: syscall.ENOSPC}
	}
	r := e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{validSend(), validSend()}})
	if r.Code != 200 || r.get("data.results.1.error.code") != "service_unavailable" || r.get("data.results.1.error.retryable") != true {
		t.Fatalf("partial batch on a full disk: %d %s", r.Code, r.Body)
	}
	if strings.Contains(r.Body, "/var/lib") || strings.Contains(r.Body, "no space left") {
		t.Fatalf("internal error detail leaked: %s", r.Body)
	}
	fs.fail = func(int) error { return fmt.Errorf("commit: %w", syscall.ENOSPC) }
	r = e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{validSend(), validSend()}})
	expectErr(t, r, 503, "service_unavailable", "")
}

func TestBatchShape(t *testing.T) {
	e, _ := newSendEnv(t)
	many := make([]any, 101)
	for i := range many {
		many[i] = validSend()
	}
	expectErr(t, e.send("/api/v1/emails/send/batch", map[string]any{"messages": many}), 422, "validation_error", "messages")
	expectErr(t, e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{}}), 422, "validation_error", "messages")
	expectErr(t, e.send("/api/v1/emails/send/batch", map[string]any{}), 422, "validation_error", "messages")
	expectErr(t, e.send("/api/v1/emails/send/batch", map[string]any{"messages": validSend()}), 400, "invalid_parameter", "messages")
	expectErr(t, e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{validSend()}, "x": 1}), 400, "invalid_parameter", "x")
	expectErr(t, e.send("/api/v1/emails/send/batch", `[{"subject":"x"}]`), 400, "invalid_parameter", "")
	// A non-object item fails alone.
	r := e.send("/api/v1/emails/send/batch", map[string]any{"messages": []any{"x", validSend()}})
	if r.Code != 200 || r.str("data.results.0.error.code") != "invalid_parameter" || r.str("data.results.1.status") != "queued" {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
}

func TestAttachmentTypes(t *testing.T) {
	e, fs := newSendEnv(t)
	b := validSend()
	docx := buildZip(t, "[Content_Types].xml", "word/document.xml")
	wrapped := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("line of text\n", 20)))
	b["attachments"] = []any{
		map[string]any{"filename": "report.docx", "content": base64.StdEncoding.EncodeToString(docx)},
		map[string]any{"filename": "notes", "content": wrapped[:40] + "\r\n" + wrapped[40:], "type": "Text/Plain; charset=latin1"},
		map[string]any{"filename": "data.xyzq", "content": base64.RawStdEncoding.EncodeToString([]byte{1, 2, 3, 4})},
	}
	if r := e.send("/api/v1/emails/send", b); r.Code != 200 {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	pm := parseMail(t, fs.submitted()[0].body)
	var types []string
	for _, p := range pm.parts {
		if p.filename != "" {
			types = append(types, p.filename+"="+p.contentType)
		}
	}
	// The docx's type comes from the system's MIME table, so only its
	// acceptance is checked.
	if len(types) != 3 || !strings.HasPrefix(types[0], "report.docx=") || types[1] != "notes=text/plain" ||
		types[2] != "data.xyzq=application/octet-stream" {
		t.Fatalf("attachment types %v", types)
	}
}

// TestBatchKeptAnswerBounded (hostile tenant): a partly queued batch is
// the one large answer an Idempotency-Key keeps for 24 h (in etcd, in
// cluster mode). 99 messages with 50 bad custom headers each must not
// answer (and keep) megabytes: a failed item lists at most 3 field
// problems and says how many there were.
func TestBatchKeptAnswerBounded(t *testing.T) {
	e, _ := newSendEnv(t)
	msgs := []any{validSend()}
	for range 99 {
		bad := validSend()
		h := map[string]any{}
		for j := range 50 {
			h[fmt.Sprintf("Bad%d-%s", j, strings.Repeat("n", 70))] = "v"
		}
		bad["custom_headers"] = h
		msgs = append(msgs, bad)
	}
	r := e.send("/api/v1/emails/send/batch", map[string]any{"messages": msgs}, "Idempotency-Key", "big-batch")
	if r.Code != 200 || r.get("data.summary.failed") != 99.0 {
		t.Fatalf("%d %.300s", r.Code, r.Body)
	}
	if errs, _ := r.get("data.results.1.error.errors").([]any); len(errs) != 3 || !strings.Contains(r.str("data.results.1.error.message"), "50 problems") {
		t.Fatalf("a failed item lists %d problems: %s", len(errs), r.str("data.results.1.error.message"))
	}
	t.Logf("answer: %d bytes", len(r.Body))
	if len(r.Body) > 400<<10 {
		t.Fatalf("the kept answer is %d bytes", len(r.Body))
	}
}
