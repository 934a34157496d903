package smtp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/smtpproto"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// body has a line starting with a dot, which go-smtp must stuff on the way
// out and the peer unstuff, so equality proves the transfer is exact.
const body = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nline\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n"

// protocolFor is the provider protocol that talks to a peer's TLS mode.
func protocolFor(mode string) string {
	switch mode {
	case testpeer.TLSStartTLS:
		return smtpproto.STARTTLS
	case testpeer.TLSImplicit:
		return smtpproto.TLS
	}
	return smtpproto.None
}

// configFor is a config that reaches s, with credentials when s has them
// and short timeouts so that failing tests fail fast.
func configFor(s *testpeer.Server, mode, user, pass string) Config {
	return Config{
		Host: s.Host(), Port: s.Port(), Protocol: protocolFor(mode),
		Username: user, Password: pass,
		HeloName: "relay.test", TLSConfig: s.ClientTLSConfig(),
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
	}
}

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func envelope(to ...string) relay.Envelope {
	if len(to) == 0 {
		to = []string{"b@example.com"}
	}
	return relay.Envelope{MessageID: "eml_test", From: "a@example.com", To: to}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// deliveryError unwraps err, failing the test when it is not one.
func deliveryError(t testing.TB, err error) *relay.DeliveryError {
	t.Helper()
	var derr *relay.DeliveryError
	if !errors.As(err, &derr) {
		t.Fatalf("error %v (%T) is not a *relay.DeliveryError", err, err)
	}
	return derr
}

// want is the expected shape of a failure; zero fields are not checked
// except Class and Phase.
type want struct {
	class    routing.Class
	phase    routing.Phase
	code     int
	enhanced string
	bodySent bool
	refused  int
}

func (w want) check(t testing.TB, err error) {
	t.Helper()
	derr := deliveryError(t, err)
	f := derr.Failure
	if c := derr.Classified(); c != w.class {
		t.Errorf("class = %v, want %v (failure %+v, err %v)", c, w.class, f, derr.Err)
	}
	if f.Phase != w.phase {
		t.Errorf("phase = %q, want %q", f.Phase, w.phase)
	}
	if f.Code != w.code {
		t.Errorf("code = %d, want %d", f.Code, w.code)
	}
	if w.enhanced != "" && f.Enhanced != w.enhanced {
		t.Errorf("enhanced = %q, want %q", f.Enhanced, w.enhanced)
	}
	if f.BodySent != w.bodySent {
		t.Errorf("body sent = %v, want %v", f.BodySent, w.bodySent)
	}
	if len(derr.RcptRefused) != w.refused {
		t.Errorf("rcpt refused = %+v, want %d", derr.RcptRefused, w.refused)
	}
}

// eventually waits up to 5 s for cond; it is a wait, not a timing check.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
