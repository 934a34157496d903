package testpeer

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

const body = "Subject: hi\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n"

// dial connects a go-smtp client the way the peer's TLS mode wants.
func dial(t *testing.T, s *Server) *gosmtp.Client {
	t.Helper()
	var (
		c   *gosmtp.Client
		err error
	)
	switch s.opts.TLS {
	case TLSImplicit:
		c, err = gosmtp.DialTLS(s.Addr(), s.ClientTLSConfig())
	case TLSStartTLS:
		c, err = gosmtp.DialStartTLS(s.Addr(), s.ClientTLSConfig())
	default:
		c, err = gosmtp.Dial(s.Addr())
	}
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.CommandTimeout = 5 * time.Second
	c.SubmissionTimeout = 5 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

// send runs one transaction and returns the first error.
func send(c *gosmtp.Client, from string, to []string, data string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(data)); err != nil {
		return err
	}
	return w.Close()
}

func code(err error) int {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestDeliveryModes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      Options
		auth      sasl.Client
		wantTLS   bool
		wantUser  string
		wantError int // code at MAIL, 0 = delivered
	}{
		{name: "none", opts: Options{}},
		{name: "none-auth-plain", opts: Options{Username: "u", Password: "p"}, auth: sasl.NewPlainClient("", "u", "p"), wantUser: "u"},
		{name: "none-auth-login", opts: Options{Username: "u", Password: "p"}, auth: sasl.NewLoginClient("u", "p"), wantUser: "u"},
		{name: "starttls-auth", opts: Options{TLS: TLSStartTLS, Username: "u", Password: "p"}, auth: sasl.NewPlainClient("", "u", "p"), wantTLS: true, wantUser: "u"},
		{name: "implicit", opts: Options{TLS: TLSImplicit}, wantTLS: true},
		{name: "auth-required", opts: Options{Username: "u", Password: "p"}, wantError: 530},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, tc.opts)
			c := dial(t, s)
			if tc.auth != nil {
				if err := c.Auth(tc.auth); err != nil {
					t.Fatalf("auth: %v", err)
				}
			}
			err := send(c, "a@example.com", []string{"b@example.com", "c@example.com"}, body)
			if got := code(err); tc.wantError != 0 {
				if got != tc.wantError {
					t.Fatalf("got %v, want code %d", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			msgs := s.WaitMessages(t, 1, 5*time.Second)
			m := msgs[0]
			if !bytes.Equal(m.Data, []byte(body)) {
				t.Errorf("data = %q, want %q", m.Data, body)
			}
			if m.From != "a@example.com" || strings.Join(m.To, ",") != "b@example.com,c@example.com" {
				t.Errorf("envelope = %s %v", m.From, m.To)
			}
			if m.TLS != tc.wantTLS || m.AuthUser != tc.wantUser || m.QueueID == "" || m.Code != 250 {
				t.Errorf("message = %+v", m)
			}
		})
	}
}

func TestScript(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *Server)
		codes []int // result code of consecutive transactions; 0 = ok
	}{
		{"data 451 once then 250", func(s *Server) {
			s.Script(StepData, "", Reply(451, "4.3.0", "try later"))
		}, []int{451, 0}},
		{"mail 421", func(s *Server) {
			s.Script(StepMail, "a@example.com", Reply(421, "4.4.5", "too many messages"))
		}, []int{421, 0}},
		{"rcpt for one recipient always", func(s *Server) {
			s.Always(StepRcpt, "B@example.com", Reply(550, "5.1.1", "no such user"))
		}, []int{550, 550}},
		{"rcpt for another recipient", func(s *Server) {
			s.Always(StepRcpt, "other@example.com", Reply(550, "5.1.1", "no such user"))
		}, []int{0, 0}},
		{"queue of actions", func(s *Server) {
			s.Script(StepData, "", Reply(452, "", "full"), Reply(554, "5.6.0", "bad"))
		}, []int{452, 554, 0}},
		{"custom 250", func(s *Server) {
			s.Script(StepData, "", Reply(250, "2.0.0", "Ok: queued as CUSTOM"))
		}, []int{0}},
		{"behave hook", func(s *Server) {
			s.SetBehave(func(step Step, arg string) Action {
				if step == StepRcpt {
					return Reply(452, "4.2.2", "mailbox full")
				}
				return Continue
			})
		}, []int{452}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, Options{})
			tc.setup(s)
			c := dial(t, s)
			want := 0
			for i, w := range tc.codes {
				err := send(c, "a@example.com", []string{"b@example.com"}, body)
				if got := code(err); got != w || (w == 0 && err != nil) {
					t.Fatalf("transaction %d: %v, want code %d", i, err, w)
				}
				if w == 0 {
					want++
				}
				if err := c.Reset(); err != nil {
					t.Fatalf("rset: %v", err)
				}
			}
			if got := s.Count(); got != want {
				t.Errorf("count = %d, want %d", got, want)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script bool
		pass   string
		want   int
	}{
		{"wrong password", false, "bad", 535},
		{"scripted 535", true, "p", 535},
		{"right password", false, "p", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, Options{TLS: TLSImplicit, Username: "u", Password: "p"})
			if tc.script {
				s.Script(StepAuth, "u", Reply(535, "5.7.8", "nope"))
			}
			c := dial(t, s)
			err := c.Auth(sasl.NewPlainClient("", "u", tc.pass))
			if got := code(err); got != tc.want || (tc.want == 0 && err != nil) {
				t.Fatalf("auth: %v, want %d", err, tc.want)
			}
		})
	}
}

func TestDropAndHang(t *testing.T) {
	for _, tc := range []struct {
		name   string
		step   Step
		action Action
		bodyIn bool // the body reached the peer
	}{
		{"drop after body", StepData, Drop, true},
		{"hang after body", StepData, Hang, true},
		{"drop at rcpt", StepRcpt, Drop, false},
		{"hang at mail", StepMail, Hang, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, Options{})
			s.Script(tc.step, "", tc.action)
			c := dial(t, s)
			c.CommandTimeout = 200 * time.Millisecond
			c.SubmissionTimeout = 200 * time.Millisecond
			err := send(c, "a@example.com", []string{"b@example.com"}, body)
			if err == nil || code(err) != 0 {
				t.Fatalf("send: %v, want a network error", err)
			}
			if tc.action == Hang {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("hang: %v, want a timeout", err)
				}
				s.ReleaseHangs()
			}
			if s.Count() != 0 {
				t.Errorf("accepted %d messages", s.Count())
			}
			rec := s.Received()
			if got := len(rec) == 1; got != tc.bodyIn {
				t.Fatalf("received %d bodies, want body in = %v", len(rec), tc.bodyIn)
			}
			if tc.bodyIn && (rec[0].Code != 0 || !bytes.Equal(rec[0].Data, []byte(body))) {
				t.Errorf("received = %+v", rec[0])
			}
		})
	}
}

func TestConnect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action Action
		code   int
	}{
		{"greeting 421", Reply(421, "", "busy"), 421},
		{"greeting 554 implicit", Reply(554, "5.7.1", "go away"), 554},
		{"drop", Drop, 0},
		{"hang", Hang, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{}
			if strings.Contains(tc.name, "implicit") {
				opts.TLS = TLSImplicit
			}
			s := Start(t, opts)
			s.Script(StepConnect, "", tc.action)
			var (
				nc  net.Conn
				err error
			)
			if opts.TLS == TLSImplicit {
				nc, err = tls.Dial("tcp", s.Addr(), s.ClientTLSConfig())
			} else {
				nc, err = net.Dial("tcp", s.Addr())
			}
			if err != nil {
				t.Fatal(err)
			}
			c := gosmtp.NewClient(nc)
			defer c.Close()
			c.CommandTimeout = 200 * time.Millisecond
			err = c.Hello("client.example")
			if got := code(err); got != tc.code || err == nil {
				t.Fatalf("hello: %v, want code %d", err, tc.code)
			}
			// The next connection is greeted normally.
			if err := dial(t, s).Noop(); err != nil {
				t.Fatalf("second connection: %v", err)
			}
			if s.Conns() != 2 {
				t.Errorf("conns = %d", s.Conns())
			}
		})
	}
}

func TestConnectionAccounting(t *testing.T) {
	s := Start(t, Options{TLS: TLSStartTLS})
	c1 := dial(t, s)
	for i := range 3 {
		if err := send(c1, "a@example.com", []string{"b@example.com"}, body); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	c2 := dial(t, s)
	if err := send(c2, "a@example.com", []string{"b@example.com"}, body); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.Transactions()); got != "[3 1]" {
		t.Errorf("transactions = %s, want [3 1]", got)
	}
	if s.Conns() != 2 || s.MaxOpen() != 2 {
		t.Errorf("conns = %d, max open = %d", s.Conns(), s.MaxOpen())
	}
	msgs := s.Messages()
	if msgs[0].ConnID != 0 || msgs[3].ConnID != 1 || !msgs[3].TLS {
		t.Errorf("messages = %+v", msgs)
	}
	s.CloseConns()
	if err := c1.Noop(); err == nil {
		t.Error("noop on a closed connection succeeded")
	}
}

func TestConcurrent(t *testing.T) {
	s := Start(t, Options{})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := gosmtp.Dial(s.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if err := send(c, fmt.Sprintf("s%d@example.com", i), []string{"r@example.com"}, body); err != nil {
				t.Error(err)
			}
			c.Quit()
		})
	}
	msgs := s.WaitMessages(t, n, 5*time.Second)
	wg.Wait()
	if len(msgs) != n || s.Conns() != n {
		t.Errorf("messages = %d, conns = %d", len(msgs), s.Conns())
	}
}
