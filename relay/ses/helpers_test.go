package ses

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// message has CRLF lines, a long line, 8-bit bytes that are not UTF-8 and
// a NUL, so equality after base64 and JSON proves the transfer is exact.
const message = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n" +
	"Subject: smtpmux via SES\r\nMessage-ID: <eml_test@smtpmux>\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n.a line with a dot\r\n" +
	"caf\xc3\xa9 \xff\xfe raw \x00 bytes\r\n-- \r\nAlice\r\n"

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func envelope(to ...string) relay.Envelope {
	if len(to) == 0 {
		to = []string{"bob@example.net"}
	}
	return relay.Envelope{MessageID: "eml_test", From: "bounces@example.com", To: to}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// want is the expected shape of a failure.
type want struct {
	class    routing.Class
	phase    routing.Phase
	code     int
	text     string // substring of Failure.Text; "" = unchecked
	bodySent bool
}

func (w want) check(t testing.TB, err error) *relay.DeliveryError {
	t.Helper()
	var derr *relay.DeliveryError
	if !errors.As(err, &derr) {
		t.Fatalf("error %v (%T) is not a *relay.DeliveryError", err, err)
	}
	f := derr.Failure
	if derr.Class == nil {
		t.Errorf("Class not set explicitly (failure %+v)", f)
	}
	if c := derr.Classified(); c != w.class {
		t.Errorf("class = %v, want %v (failure %+v, err %v)", c, w.class, f, derr.Err)
	}
	if f.Phase != w.phase {
		t.Errorf("phase = %q, want %q", f.Phase, w.phase)
	}
	if f.Code != w.code {
		t.Errorf("code = %d, want %d", f.Code, w.code)
	}
	if w.text != "" && !strings.Contains(f.Text, w.text) {
		t.Errorf("text = %q, want it to contain %q", f.Text, w.text)
	}
	if f.BodySent != w.bodySent {
		t.Errorf("body sent = %v, want %v", f.BodySent, w.bodySent)
	}
	return derr
}
