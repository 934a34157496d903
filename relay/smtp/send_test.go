package smtp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/smtpproto"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

func TestSendProtocols(t *testing.T) {
	for _, tc := range []struct {
		name     string
		peer     testpeer.Options
		protocol string // "" = protocolFor(peer.TLS)
		authMech string
		user     string
		wantTLS  bool
	}{
		{name: "none", peer: testpeer.Options{TLS: testpeer.TLSNone}},
		{name: "plain with auth", peer: testpeer.Options{TLS: testpeer.TLSNone, Username: "u", Password: "p"}, protocol: smtpproto.Plain, user: "u"},
		{name: "starttls with auth", peer: testpeer.Options{TLS: testpeer.TLSStartTLS, Username: "u", Password: "p"}, user: "u", wantTLS: true},
		{name: "starttls without auth", peer: testpeer.Options{TLS: testpeer.TLSStartTLS}, wantTLS: true},
		{name: "tls with auth", peer: testpeer.Options{TLS: testpeer.TLSImplicit, Username: "u", Password: "p"}, user: "u", wantTLS: true},
		{name: "ssl", peer: testpeer.Options{TLS: testpeer.TLSImplicit}, protocol: smtpproto.SSL, wantTLS: true},
		{name: "login only offered", peer: testpeer.Options{TLS: testpeer.TLSImplicit, Username: "u", Password: "p", AuthMechs: []string{"LOGIN"}}, user: "u", wantTLS: true},
		{name: "login forced", peer: testpeer.Options{TLS: testpeer.TLSStartTLS, Username: "u", Password: "p"}, authMech: "login", user: "u", wantTLS: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testpeer.Start(t, tc.peer)
			cfg := configFor(s, tc.peer.TLS, tc.peer.Username, tc.peer.Password)
			if tc.protocol != "" {
				cfg.Protocol = tc.protocol
			}
			cfg.AuthMech = tc.authMech
			p := newProvider(t, cfg)
			env := envelope("b@example.com", "c@example.com")
			res, err := p.Send(ctxTimeout(t, 5*time.Second), env, []byte(body))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := s.WaitMessages(t, 1, 5*time.Second)
			m := msgs[0]
			if !bytes.Equal(m.Data, []byte(body)) {
				t.Errorf("peer got %q\nwant %q", m.Data, body)
			}
			if m.From != env.From || strings.Join(m.To, " ") != "b@example.com c@example.com" {
				t.Errorf("envelope = %s %v", m.From, m.To)
			}
			if m.TLS != tc.wantTLS || m.AuthUser != tc.user || m.Helo != "relay.test" {
				t.Errorf("peer saw tls=%v user=%q helo=%q", m.TLS, m.AuthUser, m.Helo)
			}
			if res.Reply != "250 2.0.0 Ok: queued as "+m.QueueID || res.UpstreamID != m.QueueID || len(res.Refused) != 0 {
				t.Errorf("result = %+v, peer queue id %s", res, m.QueueID)
			}
		})
	}
}

func TestSendFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		peer    testpeer.Options
		user    string // provider credentials; password "p" unless badPass
		badPass bool
		mutate  func(*Config)
		script  func(s *testpeer.Server)
		env     []string
		timeout time.Duration
		want    want
	}{
		{
			name: "bad password", peer: testpeer.Options{TLS: testpeer.TLSImplicit, Username: "u", Password: "p"},
			user: "u", badPass: true,
			want: want{class: routing.Auth, phase: routing.PhaseAuth, code: 535, enhanced: "5.7.8"},
		},
		{
			name: "auth required but no credentials", peer: testpeer.Options{Username: "u", Password: "p"},
			want: want{class: routing.Auth, phase: routing.PhaseMail, code: 530, enhanced: "5.7.0"},
		},
		{
			name: "credentials but no AUTH offered", peer: testpeer.Options{},
			user: "u",
			want: want{class: routing.Auth, phase: routing.PhaseAuth},
		},
		{
			name: "no usable mechanism", peer: testpeer.Options{Username: "u", Password: "p", AuthMechs: []string{"CRAM-MD5"}},
			user: "u",
			want: want{class: routing.Auth, phase: routing.PhaseAuth},
		},
		{
			name: "starttls not offered", peer: testpeer.Options{},
			mutate: func(c *Config) { c.Protocol = smtpproto.STARTTLS },
			want:   want{class: routing.Auth, phase: routing.PhaseConnect},
		},
		{
			name: "untrusted certificate", peer: testpeer.Options{TLS: testpeer.TLSImplicit},
			mutate: func(c *Config) { c.TLSConfig = nil },
			want:   want{class: routing.Connection, phase: routing.PhaseConnect},
		},
		{
			name: "greeting 421", peer: testpeer.Options{},
			script: func(s *testpeer.Server) { s.Always(testpeer.StepConnect, "", testpeer.Reply(421, "", "busy")) },
			want:   want{class: routing.Connection, phase: routing.PhaseConnect, code: 421},
		},
		{
			name: "451 at data", peer: testpeer.Options{},
			script: func(s *testpeer.Server) { s.Script(testpeer.StepData, "", testpeer.Reply(451, "4.3.0", "try later")) },
			want:   want{class: routing.Transient, phase: routing.PhaseFinal, code: 451, enhanced: "4.3.0", bodySent: true},
		},
		{
			name: "554 at data", peer: testpeer.Options{},
			script: func(s *testpeer.Server) {
				s.Script(testpeer.StepData, "", testpeer.Reply(554, "5.6.0", "content rejected"))
			},
			want: want{class: routing.Permanent, phase: routing.PhaseFinal, code: 554, enhanced: "5.6.0", bodySent: true},
		},
		{
			name: "quota at mail", peer: testpeer.Options{},
			script: func(s *testpeer.Server) {
				s.Script(testpeer.StepMail, "", testpeer.Reply(451, "4.7.0", "Daily sending quota exceeded"))
			},
			want: want{class: routing.Quota, phase: routing.PhaseMail, code: 451},
		},
		{
			name: "all recipients 550", peer: testpeer.Options{},
			script: func(s *testpeer.Server) {
				s.Always(testpeer.StepRcpt, "", testpeer.Reply(550, "5.1.1", "no such user"))
			},
			env:  []string{"x@example.com", "y@example.com", "z@example.com"},
			want: want{class: routing.Permanent, phase: routing.PhaseRcpt, code: 550, enhanced: "5.1.1", refused: 3},
		},
		{
			name: "all recipients refused, one temporarily", peer: testpeer.Options{},
			script: func(s *testpeer.Server) {
				s.Always(testpeer.StepRcpt, "y@example.com", testpeer.Reply(452, "4.2.2", "mailbox full"))
				s.Always(testpeer.StepRcpt, "", testpeer.Reply(550, "5.1.1", "no such user"))
			},
			env:  []string{"x@example.com", "y@example.com"},
			want: want{class: routing.Transient, phase: routing.PhaseRcpt, code: 452, enhanced: "4.2.2", refused: 2},
		},
		{
			name: "drop after body", peer: testpeer.Options{},
			script: func(s *testpeer.Server) { s.Script(testpeer.StepData, "", testpeer.Drop) },
			want:   want{class: routing.Uncertain, phase: routing.PhaseFinal, bodySent: true},
		},
		{
			name: "drop at mail", peer: testpeer.Options{},
			script: func(s *testpeer.Server) { s.Script(testpeer.StepMail, "", testpeer.Drop) },
			want:   want{class: routing.Connection, phase: routing.PhaseMail},
		},
		{
			name: "drop at rcpt after a refusal", peer: testpeer.Options{},
			script: func(s *testpeer.Server) {
				s.Script(testpeer.StepRcpt, "x@example.com", testpeer.Reply(550, "5.1.1", "no"))
				s.Script(testpeer.StepRcpt, "y@example.com", testpeer.Drop)
			},
			env:  []string{"x@example.com", "y@example.com"},
			want: want{class: routing.Connection, phase: routing.PhaseRcpt, refused: 1},
		},
		{
			name: "hang at greeting until deadline", peer: testpeer.Options{TLS: testpeer.TLSStartTLS},
			script:  func(s *testpeer.Server) { s.Always(testpeer.StepConnect, "", testpeer.Hang) },
			timeout: 200 * time.Millisecond,
			want:    want{class: routing.Connection, phase: routing.PhaseConnect},
		},
		{
			name: "hang at rcpt until deadline", peer: testpeer.Options{},
			script:  func(s *testpeer.Server) { s.Always(testpeer.StepRcpt, "", testpeer.Hang) },
			timeout: 200 * time.Millisecond,
			want:    want{class: routing.Connection, phase: routing.PhaseRcpt},
		},
		{
			name: "hang after body until deadline", peer: testpeer.Options{TLS: testpeer.TLSImplicit},
			script:  func(s *testpeer.Server) { s.Always(testpeer.StepData, "", testpeer.Hang) },
			timeout: 200 * time.Millisecond,
			want:    want{class: routing.Uncertain, phase: routing.PhaseFinal, bodySent: true},
		},
		{
			name: "non-ASCII address without SMTPUTF8", peer: testpeer.Options{},
			env:  []string{"bjørn@example.com"},
			want: want{class: routing.Permanent, phase: routing.PhaseMail},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testpeer.Start(t, tc.peer)
			if tc.script != nil {
				tc.script(s)
			}
			pass := ""
			if tc.user != "" {
				pass = "p"
				if tc.badPass {
					pass = "wrong"
				}
			}
			cfg := configFor(s, tc.peer.TLS, tc.user, pass)
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			p := newProvider(t, cfg)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx := ctxTimeout(t, timeout)
			res, err := p.Send(ctx, envelope(tc.env...), []byte(body))
			if err == nil {
				t.Fatalf("Send succeeded: %+v", res)
			}
			tc.want.check(t, err)
			if tc.timeout != 0 && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
			}
			if s.Count() != 0 {
				t.Errorf("peer accepted %d messages", s.Count())
			}
		})
	}
}

func TestSendRefusedRecipients(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refuse    string
		reply     testpeer.Action
		wantCode  int
		delivered string
	}{
		{"one 550 of three", "y@example.com", testpeer.Reply(550, "5.1.1", "no such user"), 550, "x@example.com z@example.com"},
		{"one 452 of three", "z@example.com", testpeer.Reply(452, "4.2.2", "mailbox full"), 452, "x@example.com y@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testpeer.Start(t, testpeer.Options{})
			s.Always(testpeer.StepRcpt, tc.refuse, tc.reply)
			p := newProvider(t, configFor(s, "", "", ""))
			res, err := p.Send(ctxTimeout(t, 5*time.Second), envelope("x@example.com", "y@example.com", "z@example.com"), []byte(body))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(res.Refused) != 1 {
				t.Fatalf("refused = %+v", res.Refused)
			}
			r := res.Refused[0]
			if r.Rcpt != tc.refuse || r.Code != tc.wantCode || r.Enhanced != tc.reply.Enhanced || r.Text != tc.reply.Text {
				t.Errorf("refused = %+v", r)
			}
			m := s.WaitMessages(t, 1, 5*time.Second)[0]
			if got := strings.Join(m.To, " "); got != tc.delivered {
				t.Errorf("delivered to %s, want %s", got, tc.delivered)
			}
			// Refusals of some recipients do not spoil the session.
			if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body)); err != nil {
				t.Fatal(err)
			}
			if s.Conns() != 1 {
				t.Errorf("conns = %d, want 1", s.Conns())
			}
		})
	}
}

func TestSendDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := newProvider(t, Config{Host: "127.0.0.1", Port: port, Protocol: smtpproto.None})
	_, err = p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(body))
	want{class: routing.Connection, phase: routing.PhaseConnect}.check(t, err)
	// The failed dial gave its slot back.
	if n := len(p.slots); n != 0 {
		t.Errorf("%d slots still taken", n)
	}
}

func TestSendCancel(t *testing.T) {
	s := testpeer.Start(t, testpeer.Options{})
	s.Always(testpeer.StepMail, "", testpeer.Hang)
	p := newProvider(t, configFor(s, "", "", ""))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := p.Send(ctx, envelope(), []byte(body))
	want{class: routing.Connection, phase: routing.PhaseMail}.check(t, err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
}

func TestSendBadEnvelope(t *testing.T) {
	p := newProvider(t, Config{Host: "127.0.0.1", Port: 1, Protocol: smtpproto.None})
	for _, tc := range []struct {
		name string
		from string
		to   []string
	}{
		{"no recipients", "a@example.com", nil},
		{"CRLF in sender", "a@example.com\r\nRCPT TO:<x@y>", []string{"b@example.com"}},
		{"angle bracket in recipient", "a@example.com", []string{"b@example.com>"}},
		{"empty recipient", "a@example.com", []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Send(context.Background(), relay.Envelope{From: tc.from, To: tc.to}, []byte(body))
			if c := deliveryError(t, err).Classified(); c != routing.Permanent {
				t.Errorf("class = %v", c)
			}
		})
	}
}

func TestQueuedAs(t *testing.T) {
	for reply, want := range map[string]string{
		"2.0.0 Ok: queued as 4XyZ123":          "4XyZ123",
		"2.0.0 OK: Queued as ABC; thanks":      "ABC",
		"2.0.0 Ok queued as <id@host>":         "",
		"2.0.0 OK 1700000000 abc.123 - gsmtp":  "",
		"Ok: queued as 9F2E31A2B1 (more info)": "9F2E31A2B1",
	} {
		if got := queuedAs(reply); got != want {
			t.Errorf("queuedAs(%q) = %q, want %q", reply, got, want)
		}
	}
}
