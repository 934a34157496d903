package testpeer

import (
	"errors"
	"io"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// errDropped is returned to go-smtp after the peer closed the connection
// on purpose; the reply it then tries to write goes nowhere.
var errDropped = errors.New("testpeer: connection dropped by script")

var errAuthRequired = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

// backend creates one session per EHLO (go-smtp starts a new one after
// STARTTLS, so StepHello is consulted again then).
type backend struct{ srv *Server }

func (b backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	s := &session{srv: b.srv, conn: c, connID: connID(c.Conn()), helo: c.Hostname()}
	_, s.tls = c.TLSConnectionState()
	if err := s.act(b.srv.decide(StepHello, c.Hostname())); err != nil {
		return nil, err
	}
	return s, nil
}

// session records one client's transactions and applies the script.
type session struct {
	srv      *Server
	conn     *gosmtp.Conn
	connID   int
	tls      bool
	helo     string
	authUser string
	authed   bool
	from     string
	to       []string
}

var _ gosmtp.AuthSession = (*session)(nil)

// act carries out a non-Continue action; it returns nil for Continue.
func (s *session) act(a Action) error {
	switch a.kind {
	case kindReply:
		return a.smtpError()
	case kindDrop:
		s.conn.Conn().Close()
		return errDropped
	case kindHang:
		s.srv.waitRelease()
		s.conn.Conn().Close()
		return errDropped
	}
	return nil
}

// AuthMechanisms offers PLAIN and LOGIN (or Options.AuthMechs) when the
// peer has credentials configured, and nothing otherwise.
func (s *session) AuthMechanisms() []string {
	if s.srv.opts.Username == "" {
		return nil
	}
	if len(s.srv.opts.AuthMechs) > 0 {
		return s.srv.opts.AuthMechs
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	for _, m := range s.AuthMechanisms() {
		if m != mech {
			continue
		}
		switch mech {
		case sasl.Plain:
			return sasl.NewPlainServer(func(_, user, pass string) error { return s.authenticate(user, pass) }), nil
		case sasl.Login:
			return &loginServer{auth: s.authenticate}, nil
		}
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

func (s *session) authenticate(user, pass string) error {
	if err := s.act(s.srv.decide(StepAuth, user)); err != nil {
		return err
	}
	if user != s.srv.opts.Username || pass != s.srv.opts.Password {
		return gosmtp.ErrAuthFailed
	}
	s.authed, s.authUser = true, user
	return nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.srv.opts.Username != "" && !s.authed {
		return errAuthRequired
	}
	if err := s.act(s.srv.decide(StepMail, from)); err != nil {
		return err
	}
	s.from, s.to = from, nil
	s.srv.txnStarted(s.connID)
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if err := s.act(s.srv.decide(StepRcpt, to)); err != nil {
		return err
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{
		From: s.from, To: append([]string(nil), s.to...), Data: body,
		AuthUser: s.authUser, TLS: s.tls, Helo: s.helo, ConnID: s.connID,
		Received: time.Now(),
	}
	a := s.srv.decide(StepData, s.from)
	switch {
	case a.kind == kindContinue:
		m.QueueID = s.srv.nextQueueID()
		a = Reply(250, "2.0.0", "Ok: queued as "+m.QueueID)
	case a.kind == kindReply:
		// keep the scripted reply; 2xx means accepted with custom text
	default:
		s.srv.record(m) // received, but the client never hears so
		return s.act(a)
	}
	m.Code = a.Code
	s.srv.record(m)
	// go-smtp writes an *SMTPError verbatim, which is also how a 250 with
	// our own text (the "queued as" token) gets out.
	return a.smtpError()
}

func (s *session) Reset() { s.from, s.to = "", nil }

func (s *session) Logout() error { return nil }

// loginServer is the server side of the obsolete but still common LOGIN
// mechanism, which go-sasl only implements for clients.
type loginServer struct {
	auth  func(user, pass string) error
	user  string
	state int // 0: want username, 1: want password, 2: done
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.state {
	case 0:
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		l.user, l.state = string(resp), 1
		return []byte("Password:"), false, nil
	case 1:
		l.state = 2
		return nil, true, l.auth(l.user, string(resp))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}
