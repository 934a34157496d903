package admin

import (
	"archive/zip"
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/smtpmux/smtpmux/admin/sendapi"
	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/store"
)

// Secrets the fake Sender knows.
const (
	testSendKey     = "smx_mbx_test-sending-key-0123456789abcdefghijklmnop"
	testMailboxPass = "smx_mbx_test-mailbox-pass-0123456789abcdefghijklmn"
	testMailboxAddr = "box@example.com"
)

// submission is one message the fake Sender accepted.
type submission struct {
	cred  *sendapi.Credential
	from  string
	rcpts []string
	body  []byte
	id    string
}

// fakeSender stands in for relay.Server: it knows two credentials, records
// submissions, and can be told to fail, refuse the rate, or block.
type fakeSender struct {
	mu      sync.Mutex
	subs    []submission
	allows  int
	limited bool
	// fail, when set, decides Submit's error for the n-th call (0-based).
	fail func(n int) error
	// gate, when set, makes Submit signal entered and wait for gate.
	gate    chan struct{}
	entered chan struct{}
	calls   int
}

func (f *fakeSender) Authenticate(_, secret string) (*sendapi.Credential, error) {
	switch secret {
	case testSendKey:
		return &sendapi.Credential{Kind: store.CredKindKey, ID: "key_sendingkey00000000000000", TeamID: "team_fake"}, nil
	case testMailboxPass:
		return &sendapi.Credential{Kind: store.CredKindMailboxPassword, ID: "mbxpw_mailboxpw0000000000000", TeamID: "team_fake", RequiredFrom: testMailboxAddr}, nil
	}
	return nil, senderr.ErrBadCredential
}

func (f *fakeSender) Submit(cred *sendapi.Credential, from string, rcpts []string, body []byte) (string, error) {
	f.mu.Lock()
	n := f.calls
	f.calls++
	gate, entered, fail := f.gate, f.entered, f.fail
	f.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	if fail != nil {
		if err := fail(n); err != nil {
			return "", err
		}
	}
	id := store.NewID(store.PrefixMessage)
	f.mu.Lock()
	f.subs = append(f.subs, submission{cred: cred, from: from, rcpts: rcpts, body: body, id: id})
	f.mu.Unlock()
	return id, nil
}

func (f *fakeSender) Allow(id string) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allows++
	if f.limited {
		return false, 1500 * time.Millisecond
	}
	return true, 0
}

func (f *fakeSender) submitted() []submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]submission(nil), f.subs...)
}

// newSendEnv is newEnv with a fake Sender wired in.
func newSendEnv(t testing.TB, mods ...func(*Options)) (*testEnv, *fakeSender) {
	fs := &fakeSender{}
	e := newEnv(t, append([]func(*Options){func(o *Options) { o.Sending.Sender = fs; o.Sending.Hostname = "mx.smtpmux.test" }}, mods...)...)
	e.secret(testSendKey)
	e.secret(testMailboxPass)
	return e, fs
}

// send posts to a Sending API endpoint with the sending key.
func (e *testEnv) send(path string, body any, hdr ...string) *resp {
	e.t.Helper()
	return e.do("POST", path, body, append([]string{"Authorization", "Bearer " + testSendKey}, hdr...)...)
}

// validSend is a complete message; tests change one thing at a time.
func validSend() map[string]any {
	return map[string]any{
		"from":      map[string]any{"email": "app@example.com", "name": "Example App"},
		"to":        map[string]any{"email": "user@example.net", "name": "Ünïcode User"},
		"subject":   "Hello there",
		"html_body": "<p>Hello <b>there</b></p>",
		"text_body": "Hello there\nSecond line",
	}
}

// parsedMail is a submitted message read back with go-message.
type parsedMail struct {
	header mail.Header
	parts  []parsedPart
}

type parsedPart struct {
	contentType, filename string
	body                  []byte
}

func parseMail(t *testing.T, raw []byte) *parsedMail {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) ||
		bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\r")) {
		t.Fatalf("message has bare CR or LF line ends:\n%q", raw)
	}
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Fatal("message does not end with CRLF")
	}
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	pm := &parsedMail{header: mr.Header}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part: %v\n%s", err, raw)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		pp := parsedPart{body: b}
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			pp.contentType, _, _ = h.ContentType()
		case *mail.AttachmentHeader:
			pp.contentType, _, _ = h.ContentType()
			pp.filename, _ = h.Filename()
		}
		pm.parts = append(pm.parts, pp)
	}
	return pm
}

func (pm *parsedMail) part(t *testing.T, contentType string) parsedPart {
	t.Helper()
	for _, p := range pm.parts {
		if p.contentType == contentType {
			return p
		}
	}
	t.Fatalf("no %s part among %d", contentType, len(pm.parts))
	return parsedPart{}
}

func repeat(s string, n int) string { return strings.Repeat(s, n) }

// buildZip makes a ZIP file holding the named (tiny) entries.
func buildZip(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		content := "content of " + n
		if n == "mimetype" { // "MimeType" gets other content: a fake
			content = "application/vnd.oasis.opendocument.text"
		}
		io.WriteString(w, content)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
