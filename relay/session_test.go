package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

var queuedRe = regexp.MustCompile(`OK queued as (eml_[0-9a-z]{24})$`)

const testBody = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\n.leading dot\r\nbody\r\n"

func TestAcceptAndDeliver(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(h.secret)
	reply, err := send(c, "a@example.com", []string{"b@example.com", "c@example.com", "B@example.com"}, testBody)
	if err != nil {
		t.Fatal(err)
	}
	mm := queuedRe.FindStringSubmatch(reply)
	if mm == nil {
		t.Fatalf("reply %q lacks the eml_ id", reply)
	}
	m := h.waitMessage(mm[1])
	if m.Status != state.MessageSent || m.Subject != "hello" || m.HeaderMessageID != "m1@example.com" {
		t.Fatalf("message = %+v", m)
	}
	if len(m.Recipients) != 2 {
		t.Fatalf("duplicate recipient not folded: %+v", m.Recipients)
	}
	if len(m.Attempts) != 1 || m.Attempts[0].Status != state.AttemptSent || m.Attempts[0].ProviderID != h.provID {
		t.Fatalf("attempts = %+v", m.Attempts)
	}
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if string(h.fake.bodies[0]) != testBody {
		t.Fatalf("upstream got %q, want the exact bytes %q", h.fake.bodies[0], testBody)
	}
	if env := h.fake.sent[0]; env.From != "a@example.com" || len(env.To) != 2 || env.MessageID != mm[1] {
		t.Fatalf("envelope = %+v", env)
	}
}

func TestReplyCodes(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name string
		run  func() error
		want int
	}{
		{"no auth", func() error {
			_, err := send(h.dial(""), "a@example.com", []string{"b@example.com"}, testBody)
			return err
		}, 530},
		{"bad address syntax", func() error {
			_, err := send(h.dial(h.secret), "a@example.com", []string{"not-an-address"}, testBody)
			return err
		}, 501},
		{"bad address domain", func() error {
			_, err := send(h.dial(h.secret), "a@example.com", []string{"x@-bad..com"}, testBody)
			return err
		}, 553},
		{"long address", func() error {
			_, err := send(h.dial(h.secret), "a@example.com", []string{strings.Repeat("x", 300) + "@example.com"}, testBody)
			return err
		}, 553},
		{"long body line", func() error {
			_, err := send(h.dial(h.secret), "a@example.com", []string{"b@example.com"}, strings.Repeat("x", 65<<10)+"\r\n")
			return err
		}, 552},
		{"bad sender", func() error {
			_, err := send(h.dial(h.secret), "bad sender@", []string{"b@example.com"}, testBody)
			return err
		}, 501},
		{"too many rcpts", func() error {
			var to []string
			for i := 0; i < 6; i++ {
				to = append(to, fmt.Sprintf("r%d@example.com", i))
			}
			_, err := send(h.dial(h.secret), "a@example.com", to, testBody)
			return err
		}, 452},
		{"oversize", func() error {
			_, err := send(h.dial(h.secret), "a@example.com", []string{"b@example.com"}, strings.Repeat(strings.Repeat("x", 998)+"\r\n", 70))
			return err
		}, 552},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := smtpCode(tc.run()); got != tc.want {
				t.Fatalf("code %d, want %d", got, tc.want)
			}
		})
	}
	if d, _ := h.store.Depths(); d.Queued+d.InFlight != 0 {
		t.Fatalf("rejected transactions stored %d messages", d.Queued+d.InFlight)
	}
}

func TestBadCredentials(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial("")
	err := c.Auth(plainAuth("smx_mbx_wrongwrongwrongwrongwrongwrong"))
	if smtpCode(err) != 535 {
		t.Fatalf("wrong key: %v, want 535", err)
	}
	// Revocation applies to an open session's next transaction.
	c = h.dial(h.secret)
	if _, err := send(c, "a@example.com", []string{"b@example.com"}, testBody); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := h.store.UpdateKey(h.team, h.keyID, func(k *store.APIKey) error { k.RevokedAt = &now; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "a@example.com", []string{"b@example.com"}, testBody); smtpCode(err) != 535 {
		t.Fatalf("revoked key in open session: %v, want 535", err)
	}
	if err := h.dial("").Auth(plainAuth(h.secret)); smtpCode(err) != 535 {
		t.Fatalf("revoked key at AUTH: %v, want 535", err)
	}
}

func TestNoActiveProviders(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.store.UpdateProvider("", h.provID, 0, func(p *store.Provider) error { p.Status = state.ProviderInactive; return nil }); err != nil {
		t.Fatal(err)
	}
	_, err := send(h.dial(h.secret), "a@example.com", []string{"b@example.com"}, testBody)
	if smtpCode(err) != 451 || !strings.Contains(err.Error(), "no_active_providers") {
		t.Fatalf("got %v, want 451 4.3.0 no_active_providers", err)
	}
}

// rawDialogue sends lines and returns every reply line, for abuse tests the
// client library would refuse to produce.
func rawDialogue(t *testing.T, addr string, lines ...string) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	var out []string
	readReply := func() {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			out = append(out, strings.TrimRight(l, "\r\n"))
			if len(l) < 4 || l[3] != '-' {
				return
			}
		}
	}
	readReply() // greeting
	for _, l := range lines {
		if _, err := conn.Write([]byte(l + "\r\n")); err != nil {
			break
		}
		readReply()
	}
	return out
}

func TestHostileDialogue(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name  string
		lines []string
		want  string // a reply line prefix that must appear
	}{
		{"data before mail", []string{"EHLO x", "DATA"}, "502 5.5.1"},
		{"rcpt before mail", []string{"EHLO x", "RCPT TO:<b@example.com>"}, "502 5.5.1"},
		{"mail before helo", []string{"MAIL FROM:<a@example.com>"}, "502 5.5.1"},
		{"long helo", []string{"EHLO " + strings.Repeat("x", 10000)}, "501 5.5.2"},
		{"very long line", []string{"EHLO x", "NOOP " + strings.Repeat("x", 70000)}, "500 5.4.0"},
		{"long mail", []string{"EHLO x", "MAIL FROM:<" + strings.Repeat("x", 10000) + "@example.com>"}, "530"},
		{"nul byte", []string{"EHLO x", "MAIL FROM:<a\x00b@example.com>"}, "5"},
		{"garbage", []string{"\x01\x02\x03"}, "501"},
		{"auth garbage", []string{"EHLO x", "AUTH PLAIN !!!notbase64"}, "454"},
		{"unknown mech", []string{"EHLO x", "AUTH CRAM-MD5"}, "504"},
		{"pipelined junk", []string{"EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhello\r\n.", "QUIT"}, "530"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := rawDialogue(t, h.addr, tc.lines...)
			found := false
			for _, l := range out {
				if strings.HasPrefix(l, tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("replies %q lack %q", out, tc.want)
			}
		})
	}
	// The daemon is still up and nothing was stored.
	if _, err := send(h.dial(h.secret), "a@example.com", []string{"b@example.com"}, testBody); err != nil {
		t.Fatalf("server unusable after abuse: %v", err)
	}
	if n := len(mustDue(t, h)); n > 1 {
		t.Fatalf("abuse stored messages: %d", n)
	}
}

func mustDue(t *testing.T, h *harness) []string {
	ids, _, err := h.store.Due(time.Now().Add(time.Hour), 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	inf, _ := h.store.Inflight()
	return append(ids, inf...)
}

func TestAuthLogin(t *testing.T) {
	h := newHarness(t, nil)
	enc := func(s string) string { return b64(s) }
	out := rawDialogue(t, h.addr, "EHLO x", "AUTH LOGIN", enc("user"), enc(h.secret))
	if last := out[len(out)-1]; !strings.HasPrefix(last, "235") {
		t.Fatalf("AUTH LOGIN replies %q", out)
	}
	out = rawDialogue(t, h.addr, "EHLO x", "AUTH LOGIN "+enc("user"), enc("smx_mbx_wrongwrongwrongwrong"))
	if last := out[len(out)-1]; !strings.HasPrefix(last, "535 5.7.8") {
		t.Fatalf("bad AUTH LOGIN replies %q", out)
	}
}

func TestConnectionCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConnections = 2 })
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		bufio.NewReader(c).ReadString('\n')
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "421") {
		t.Fatalf("third connection got %q, want 421", line)
	}
	conns[0].Close()
	// The slot frees when the server sees the close: dial until it has
	// (each turned-away dial gives its slot back at once).
	waitFor(t, 3*time.Second, "a connection accepted after a slot freed", func() bool {
		c2, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c2.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, _ := bufio.NewReader(c2).ReadString('\n')
		if !strings.HasPrefix(line, "220") && !strings.HasPrefix(line, "421") {
			t.Fatalf("after a slot freed got %q, want 220 (or 421 until the close is seen)", line)
		}
		return strings.HasPrefix(line, "220")
	})
}

func TestOutcomes(t *testing.T) {
	refuse := &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseFinal, Code: 451, Enhanced: "4.3.0", Text: "try later"}}
	tests := []struct {
		name       string
		answer     func(n int, env Envelope) (*Result, error)
		wantStatus state.Message
		wantSends  int
		wantReason string
	}{
		{"451 then 250", func(n int, _ Envelope) (*Result, error) {
			if n == 0 {
				return nil, refuse
			}
			return &Result{Reply: "250 ok"}, nil
		}, state.MessageSent, 2, ""},
		{"451 forever", func(int, Envelope) (*Result, error) { return nil, refuse }, state.MessageFailed, 3, "retries_exhausted"},
		{"550 at data", func(int, Envelope) (*Result, error) {
			return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseFinal, Code: 550, Text: "spam"}}
		}, state.MessageRejected, 1, ""},
		{"uncertain", func(int, Envelope) (*Result, error) {
			return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseFinal, BodySent: true}}
		}, state.MessageFailed, 1, "uncertain"},
		{"one rcpt refused", func(_ int, env Envelope) (*Result, error) {
			return &Result{Reply: "250 ok", Refused: []RecipientReply{{Rcpt: env.To[0], Code: 550, Text: "no such user"}}}, nil
		}, state.MessageSent, 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.fake.answer = tc.answer
			reply, err := send(h.dial(h.secret), "a@example.com", []string{"x@example.com", "y@example.com"}, testBody)
			if err != nil {
				t.Fatal(err)
			}
			m := h.waitMessage(queuedRe.FindStringSubmatch(reply)[1])
			if m.Status != tc.wantStatus || h.fake.count() != tc.wantSends || m.Reason != tc.wantReason {
				t.Fatalf("status %s after %d sends reason %q, want %s after %d reason %q; %+v",
					m.Status, h.fake.count(), m.Reason, tc.wantStatus, tc.wantSends, tc.wantReason, m)
			}
		})
	}
}

func TestAuthFaultMovesToOtherProvider(t *testing.T) {
	h := newHarness(t, nil)
	second := h.addProvider("fake", nil)
	h.fake.answer = func(n int, _ Envelope) (*Result, error) {
		return nil, &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseAuth, Code: 535, Text: "bad creds"}}
	}
	// Force the first pick onto the first provider (candidates are
	// ordered by ID, and the first provider's ID is older).
	h.sched.draw = func(n int) int { return 0 }
	reply, err := send(h.dial(h.secret), "a@example.com", []string{"x@example.com"}, testBody)
	if err != nil {
		t.Fatal(err)
	}
	m := h.waitMessage(queuedRe.FindStringSubmatch(reply)[1])
	if m.Status != state.MessageSent || len(m.Attempts) != 2 || m.Attempts[0].ProviderID == m.Attempts[1].ProviderID {
		t.Fatalf("message %+v", m)
	}
	failed := m.Attempts[0].ProviderID
	if failed != h.provID || m.Attempts[1].ProviderID != second {
		t.Fatalf("attempts went to %s then %s", failed, m.Attempts[1].ProviderID)
	}
	p, _ := h.store.Provider(failed)
	if p.Status != state.ProviderError || !strings.Contains(p.StatusReason, "535") {
		t.Fatalf("auth-failing provider status %q reason %q", p.Status, p.StatusReason)
	}
}

func TestLargeMessageIsSpooled(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxMessageBytes = 1 << 20 })
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: big\r\n\r\n")
	for b.Len() < 300<<10 {
		fmt.Fprintf(&b, "line %d of a large body, long enough to need a spool file\r\n", b.Len())
	}
	body := b.String()
	reply, err := send(h.dial(h.secret), "a@example.com", []string{"b@example.com"}, body)
	if err != nil {
		t.Fatal(err)
	}
	id := queuedRe.FindStringSubmatch(reply)[1]
	m := h.waitMessage(id)
	if !m.Spooled || m.Size != int64(len(body)) || m.Subject != "big" || m.Status != state.MessageSent {
		t.Fatalf("message %+v", m)
	}
	h.fake.mu.Lock()
	got := string(h.fake.bodies[0])
	h.fake.mu.Unlock()
	if got != body {
		t.Fatalf("upstream got %d bytes, want the exact %d", len(got), len(body))
	}
	// The delivered body stays for the retention period: not an orphan.
	if n, err := h.store.SweepSpool(); err != nil || n != 0 {
		t.Fatalf("the spool sweep removed %d files of a stored message, %v", n, err)
	}
	// Oversize while streaming: refused, nothing left in the spool.
	_, err = send(h.dial(h.secret), "a@example.com", []string{"b@example.com"}, strings.Repeat(body, 4))
	if smtpCode(err) != 552 {
		t.Fatalf("oversize spooled message: %v, want 552", err)
	}
	if n, _ := h.store.SweepSpool(); n != 0 {
		t.Fatalf("aborted spool file left behind (%d)", n)
	}
}

func TestShutdownDrainsTransactionsAndClosesIdleSessions(t *testing.T) {
	h := newHarness(t, nil)
	idle := h.dial(h.secret)
	busy := h.dial(h.secret)
	if err := busy.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt("b@example.com", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	// The idle session is told to go away while the transaction holds
	// Shutdown (well before its 5 s context ends).
	waitFor(t, 3*time.Second, "the idle session hung up during shutdown", func() bool { return idle.Noop() != nil })
	// The session in a transaction finishes it and gets its 250.
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, testBody)
	if _, err := w.CloseWithResponse(); err != nil {
		t.Fatalf("transaction in progress at shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not finish after the last transaction")
	}
}

func TestStorageErrorReplies(t *testing.T) {
	full := storageError(fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), "eml_x")
	if full.Code != 452 || full.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("disk full: %+v, want 452 4.3.1", full)
	}
	other := storageError(errors.New("boom"), "eml_x")
	if other.Code != 451 || !strings.Contains(other.Message, "eml_x") {
		t.Fatalf("other failure: %+v", other)
	}
}

func TestAuthFailuresLimitedPerIP(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthFailLimit = 3 })
	for i := 0; i < 3; i++ {
		if err := h.dial("").Auth(plainAuth("smx_mbx_wrongwrongwrongwrongwrongwrong")); smtpCode(err) != 535 {
			t.Fatalf("failure %d: %v, want 535", i, err)
		}
	}
	// Past the limit even the right key is refused from this address.
	if err := h.dial("").Auth(plainAuth(h.secret)); smtpCode(err) != 421 {
		t.Fatalf("after 3 failures: %v, want 421", err)
	}
}

// TestShutdownRightAfterStart: a Shutdown that comes before the listener's
// Serve goroutine has run still closes the listener and returns; it used to
// wait forever on that goroutine (a SIGTERM just after start-up hung).
func TestShutdownRightAfterStart(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "relay.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < 200; i++ {
		srv := NewServer(Config{Hostname: "relay.test", Listen: []string{"127.0.0.1:0"}, MaxConnections: 5}, st, nil, nil, logger, nil)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		addr := srv.Addrs()[0].String()
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			done <- srv.Shutdown(ctx)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: shutdown: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: shutdown right after start did not return", i)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("round %d: %s still accepts after shutdown", i, addr)
		}
	}
}
