package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/crlf"
	"github.com/smtpmux/smtpmux/internal/mailhdr"
	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// Replies of the inbound dialogue (SPEC §4). Texts are generic on purpose:
// details go to the log, never to the client.
var (
	errNeedAuth     = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errBadAuth      = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errNoActive     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "no_active_providers"}
	errBadAddr      = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Malformed address"}
	errTempFail     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errLineTooLong  = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message line too long"}
	errNoBody       = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Empty message"}
	errDailyLimit   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Daily sending limit reached"}
	errHourlyLimit  = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients for the hourly sending limit, send the rest in another message"}
	errShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
	errNotMailbox   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address must be the mailbox address"}
	errDataTimeout  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout while reading the message, closing connection"}
	errAuthLimited  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications, try again later"}
	// errAuthUnavailable: the credential could not be checked (a store
	// error): RFC 4954's temporary authentication failure.
	errAuthUnavailable = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure, try again later"}
)

// session is one inbound SMTP connection's state.
type session struct {
	srv    *Server
	conn   *smtp.Conn
	remote string
	cred   *Credential
	from   string
	rcpts  []string
	// suppressed are the rcpts (lower-case) accepted in
	// suppressed_action "accept" mode: recorded, not sent.
	suppressed map[string]bool
	// inTx is set between MAIL and the end of the transaction; shutdown
	// lets such a session finish and closes idle ones at once.
	inTx atomic.Bool
	// managed and reserved: recipients of this transaction reserved on the
	// managed account's daily limit (see managed.go), the first at
	// reservedAt.
	managed    *store.Provider
	reserved   int
	reservedAt time.Time
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.cred != nil {
		return nil, &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Already authenticated"}
	}
	check := func(_, password string) error { return s.authenticate(password) }
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, username, password string) error { return check(username, password) }), nil
	case sasl.Login:
		return newLoginServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks the password (a sending key or mailbox password);
// the username is ignored, as SPEC §4 says. Failed attempts are counted
// per client IP: past the limit the IP's AUTH is refused without a check
// and the connection closed, so guessing keys does not scale with the
// number of connections.
func (s *session) authenticate(password string) error {
	cred, err := s.srv.checkAuth(remoteIP(s.remote), password)
	var limited *senderr.AuthLimitedError
	if errors.As(err, &limited) {
		s.srv.log.Warn("auth refused: too many failures from this address", "event", "auth_failed", "remote", s.remote)
		s.closeAfterReply()
		return errAuthLimited
	}
	if errors.Is(err, senderr.ErrAuthUnavailable) {
		s.srv.log.Error("auth check failed", "event", "auth_unavailable", "remote", s.remote, "err", err)
		return errAuthUnavailable
	}
	if err != nil {
		s.srv.log.Info("auth failed", "event", "auth_failed", "remote", s.remote)
		return errBadAuth
	}
	s.cred = cred
	s.progress(true)
	return nil
}

// progress tells the connection's limits that the client moved forward
// (authenticated, or had a message queued): the count of commands without
// progress starts again, and an authenticated connection gets the full
// read_timeout.
func (s *session) progress(authed bool) {
	if t := trackedOf(s.conn); t != nil {
		t.progress(authed)
	}
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.draining.Load() {
		return errShuttingDown
	}
	if s.cred == nil {
		return errNeedAuth
	}
	// Revocation takes effect at the next transaction of an open session.
	fresh, err := s.srv.auth.Recheck(s.cred)
	if errors.Is(err, senderr.ErrAuthUnavailable) {
		s.srv.log.Error("credential recheck failed", "team", s.cred.TeamID, "err", err)
		return errTempFail // the session stays authenticated; the client retries
	}
	if err != nil {
		s.cred = nil
		return errBadAuth
	}
	s.cred = fresh
	if from != "" {
		if err := addressError(from); err != nil {
			return err
		}
	}
	if s.cred.RequiredFrom != "" && !asciiEqualFold(from, s.cred.RequiredFrom) {
		s.srv.reject(s.cred, "sender_not_mailbox")
		return errNotMailbox
	}
	if ok, wait := s.srv.AllowSend(s.cred.ID); !ok {
		s.srv.reject(s.cred, "rate_limited")
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
			Message: fmt.Sprintf("Rate limit exceeded, retry in %d s", int(wait.Seconds())+1)}
	}
	ok, err := s.srv.hasActiveProvider(s.cred)
	if err != nil {
		s.srv.log.Error("provider lookup failed", "err", err)
		return errTempFail
	}
	if !ok {
		s.srv.reject(s.cred, "no_active_providers")
		return errNoActive
	}
	s.from = from
	s.rcpts = s.rcpts[:0]
	clear(s.suppressed)
	s.inTx.Store(true)
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.cred == nil {
		return errNeedAuth
	}
	if err := addressError(to); err != nil {
		return err
	}
	for _, r := range s.rcpts {
		if strings.EqualFold(r, to) {
			return nil // a duplicate recipient gets one copy
		}
	}
	if err := s.srv.checkSuppressed(s.cred, to); err == errAcceptSuppressed {
		// Accepted and recorded, never sent: it takes no managed
		// capacity.
		if s.suppressed == nil {
			s.suppressed = map[string]bool{}
		}
		s.suppressed[strings.ToLower(to)] = true
		s.rcpts = append(s.rcpts, to)
		return nil
	} else if err != nil {
		return err
	}
	managed, team, err := s.srv.managedOnly(s.cred)
	if err != nil {
		s.srv.log.Error("reading the team's limits failed", "team", s.cred.TeamID, "err", err)
		return errTempFail
	}
	if managed != nil {
		switch s.srv.acceptManaged(context.Background(), managed, team, 1, s.reserved+1, s.srv.now()) {
		case managedOverDaily:
			s.srv.reject(s.cred, "daily_limit_exceeded")
			return errDailyLimit
		case managedOverHourly:
			// 452: this recipient, not the message, is refused; the
			// client sends it in another transaction (RFC 5321 §4.5.3.1.10).
			s.srv.reject(s.cred, "hourly_limit_exceeded")
			return errHourlyLimit
		}
		if s.reserved == 0 {
			s.reservedAt = s.srv.now().UTC()
		}
		s.managed = managed
		s.reserved++
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if s.cred == nil {
		return errNeedAuth
	}
	id := s.srv.newMessageID()
	// Bare CR/LF and NUL are dealt with here, before anything is stored,
	// so no later reader can see line ends other than the DATA reader saw
	// (SMTP smuggling, internal/crlf).
	head, release, spool, size, err := s.srv.readBody(id, crlf.NewReader(r, s.srv.cfg.BareNewlines))
	if err != nil {
		if reason := contentRejectReason(err); reason != "" {
			s.srv.reject(s.cred, reason)
		}
		if err == errDataTimeout {
			// What follows a stalled body cannot be told apart from
			// commands: end the connection after the reply.
			s.closeAfterReply()
		}
		return err
	}
	// head is a pooled buffer: Enqueue has copied it into the store by
	// the time Data returns.
	defer release()
	if size == 0 {
		return errNoBody
	}
	if s.cred.RequiredFrom != "" && !mailboxHeadersOK(head, s.cred.RequiredFrom, spool == nil) {
		if spool != nil {
			spool.Abort()
		}
		s.srv.reject(s.cred, "header_from_not_mailbox")
		return errNotMailbox
	}
	msg := s.srv.newMessage(id, s.cred, "smtp", s.from, s.rcpts, head, size)
	markSuppressed(msg, s.suppressed)
	if s.managed != nil {
		msg.ManagedReserved, msg.ManagedProviderID, msg.ManagedReservedAt = s.reserved, s.managed.ID, s.reservedAt
	}
	var body []byte
	if spool != nil && msg.PendingCount() == 0 {
		spool.Abort() // every recipient suppressed: nothing to send
		spool = nil
	}
	if spool != nil {
		msg.Spooled = true
	} else {
		body = head
	}
	if err := s.srv.enqueue(msg, body); err != nil {
		s.releaseReserved()
		if spool != nil {
			spool.Abort()
		}
		s.srv.log.Error("enqueue failed", "msg_id", msg.ID, "err", err)
		return storageError(err, msg.ID)
	}
	s.managed, s.reserved = nil, 0 // now the message's
	s.progress(false)
	// go-smtp writes whatever status Data returns; a 250 "error" is how a
	// backend chooses the text of the success reply.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + msg.ID}
}

// newMessageID names a new message; in cluster mode the ID names this
// node (Config.NodeID), which holds the message and delivers it.
func (srv *Server) newMessageID() string { return store.NodeMessageID(srv.cfg.NodeID) }

// readBody reads DATA. Up to store.InlineLimit it stays in memory and goes
// into bbolt with the record; past that it streams into a spool file (the
// first InlineLimit bytes, which hold the headers, are still returned as
// head). head is a pooled buffer, valid until release is called (once the
// message is stored or refused). Read errors map to the SMTP replies of
// SPEC §4.
func (srv *Server) readBody(id string, r io.Reader) (head []byte, release func(), spool *store.SpoolFile, size int64, err error) {
	bp := bodyBufs.Get().(*[]byte)
	buf := (*bp)[:cap(*bp)]
	release = func() { bodyBufs.Put(bp) }
	n, err := fill(r, buf)
	switch {
	case err == io.EOF:
		// The common case: the whole message fits.
		return buf[:n], release, nil, int64(n), nil
	case err != nil:
		// io.ErrUnexpectedEOF included: the connection ended before
		// <CRLF>.<CRLF> (or inside a BDAT chunk). The client saw no 250
		// and will send the message again, so the part it did send must
		// not be queued.
		release()
		return nil, nil, nil, 0, dataError(err)
	}
	fail := func(err error) ([]byte, func(), *store.SpoolFile, int64, error) {
		release()
		return nil, nil, nil, 0, err
	}
	spool, err = srv.store.CreateSpool(id)
	if err != nil {
		srv.log.Error("creating spool file failed", "msg_id", id, "err", err)
		return fail(storageError(err, id))
	}
	if _, err := spool.Write(buf); err != nil {
		spool.Abort()
		return fail(storageError(err, id))
	}
	copied, err := io.CopyBuffer(spool, r, make([]byte, 32<<10))
	if err != nil {
		spool.Abort()
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fail(storageError(err, id)) // our disk, not the client
		}
		return fail(dataError(err))
	}
	if err := spool.Finish(); err != nil {
		srv.log.Error("syncing spool file failed", "msg_id", id, "err", err)
		return fail(storageError(err, id))
	}
	return buf, release, spool, int64(len(buf)) + copied, nil
}

// fill reads into buf until it is full (err nil) or r ends. Unlike
// io.ReadFull it passes on r's own error unchanged: io.EOF is the clean
// end of the body (the DATA reader saw <CRLF>.<CRLF>, or BDAT LAST was
// read whole), while io.ReadFull turns that into io.ErrUnexpectedEOF for
// a body shorter than buf, the same error the DATA reader returns for a
// connection that ended mid-body. Only r's io.EOF may end a message.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// bodyBufs holds DATA read buffers of InlineLimit+1 bytes, so a 2 KiB
// message does not allocate and zero 64 KiB.
var bodyBufs = sync.Pool{New: func() any {
	b := make([]byte, store.InlineLimit+1)
	return &b
}}

// storageError is the reply when the message could not be stored: a full
// disk is 452 4.3.1 (RFC 3463: mail system full), anything else 451 4.3.0.
// Either way nothing was acknowledged, so nothing is lost: the client
// keeps the message and retries.
func storageError(err error, id string) *smtp.SMTPError {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure storing message " + id}
}

// dataError maps an error reading DATA from the client to a reply.
func dataError(err error) error {
	if e := contentError(err); e != nil {
		return e
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se // 552 5.3.4 from go-smtp's size limit
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return errLineTooLong
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errDataTimeout
	}
	return errTempFail
}

// releaseReserved gives back managed-account reservations of a
// transaction that did not end in a queued message.
func (s *session) releaseReserved() {
	if s.managed != nil {
		s.srv.releaseAccepted(s.managed.ID, s.reserved, s.reservedAt)
	}
	s.managed, s.reserved = nil, 0
}

func (s *session) Reset() {
	s.releaseReserved()
	s.from = ""
	s.rcpts = s.rcpts[:0]
	clear(s.suppressed)
	s.inTx.Store(false)
	if s.srv.draining.Load() {
		// The transaction shutdown waited for is over and its reply is
		// written; go-smtp would re-arm the read deadline, so close.
		s.conn.Conn().Close()
	}
}

func (s *session) Logout() error {
	s.srv.untrack(s)
	return nil
}

// closeAfterReply closes the connection shortly after the current reply
// is written (go-smtp writes it when the handler returns).
func (s *session) closeAfterReply() {
	c := s.conn.Conn()
	time.AfterFunc(100*time.Millisecond, func() { c.Close() })
}

// remoteIP is the host part of a remote address.
func remoteIP(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// hangUp ends an idle session at shutdown: a 421 (the session is blocked
// reading its next command, so nothing else is writing), then close. A
// read deadline would not do: go-smtp re-arms it before every read.
func (s *session) hangUp() {
	c := s.conn.Conn()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "421 4.3.2 "+s.srv.cfg.Hostname+" Shutting down, try again later\r\n")
	c.Close()
}

// newMessage builds the record of an accepted message; head is the start
// of the body (at least the header block).
func (srv *Server) newMessage(id string, cred *Credential, source, from string, rcpts []string, head []byte, size int64) *store.Message {
	now := srv.now().UTC()
	m := &store.Message{
		ID: id, TeamID: cred.TeamID, CredentialID: cred.ID,
		MailboxID: cred.MailboxID, Source: source, Scope: cred.Scope, From: from,
		Size: size, Status: state.MessagePending, NextAttemptAt: now,
		CreatedAt: now, UpdatedAt: now,
	}
	m.Recipients = make([]store.Recipient, len(rcpts))
	for i, r := range rcpts {
		m.Recipients[i] = store.Recipient{Address: r, Status: state.MessagePending}
	}
	m.Subject, m.HeaderMessageID = headerSummary(head)
	return m
}

// enqueue stores the message durably, then wakes the scheduler. A
// message with no recipient to send to (all suppressed) is stored
// finished, without its body.
func (srv *Server) enqueue(m *store.Message, body []byte) error {
	start := time.Now()
	if m.PendingCount() == 0 {
		if err := srv.store.RecordFinished(m); err != nil {
			return err
		}
		srv.metrics.acceptedOne()
		srv.log.Info("accepted", "event", "suppressed", "msg_id", m.ID, "team", m.TeamID,
			"rcpts", len(m.Recipients), "size", m.Size, "commit_ms", time.Since(start).Milliseconds())
		return nil
	}
	if err := srv.store.Enqueue(m, body); err != nil {
		return err
	}
	if m.MailboxID == "" { // keys only; mailbox passwords have no last_used_at
		srv.used.Touch(m.CredentialID, srv.now())
	}
	srv.metrics.acceptedOne()
	// LogAttrs with typed attributes: Info's ...any boxed each value
	// (issue 19); the same line.
	srv.log.LogAttrs(context.Background(), slog.LevelInfo, "accepted", slog.String("event", "accepted"),
		slog.String("msg_id", m.ID), slog.String("team", m.TeamID), slog.Int("rcpts", len(m.Recipients)),
		slog.Int64("size", m.Size), slog.Int64("commit_ms", time.Since(start).Milliseconds()))
	srv.sched.Kick()
	return nil
}

func (srv *Server) hasActiveProvider(c *Credential) (bool, error) {
	ps, err := srv.reg.TeamProviders(c.TeamID)
	if err != nil {
		return false, err
	}
	return activeIn(routingScope(c.Scope), ps), nil
}

func (srv *Server) reject(c *Credential, reason string) {
	srv.metrics.refused(reason)
	srv.log.Info("rejected", slog.String("event", "rejected"), slog.String("team", c.TeamID),
		slog.String("reason", reason))
}

// readHeader parses the header block (at most 64 KiB of it) as
// net/textproto's ReadMIMEHeader does, best effort: values unfolded and
// trimmed, keys canonical, and the fields before the first malformed one
// (no colon, a bad key or control bytes in the value) kept.
func readHeader(body []byte) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	walkHeader(body, func(k, v []byte) {
		key := textproto.CanonicalMIMEHeaderKey(string(k))
		h[key] = append(h[key], string(v))
	})
	return h
}

// walkHeader calls fn with each well-formed field's name and unfolded,
// trimmed value, in order, up to the first malformed field: readHeader's
// reading, without building a map. k and v are only valid during the call
// (they share one buffer), so a caller after a few fields copies only
// those: the message log wants two of a header's dozen fields, and this
// runs for every accepted message.
func walkHeader(body []byte, fn func(k, v []byte)) {
	b := body[:min(len(body), 64<<10)]
	var kv []byte
	for _, f := range mailhdr.Split(b, mailhdr.Options{Mode: mailhdr.LF}).Fields {
		if b[f.Start] == ' ' || b[f.Start] == '\t' || f.Colon < 0 {
			return // a leading continuation, or no colon: malformed
		}
		kv = kv[:0]
		for pos := f.Start; pos < f.End; {
			l, next := fieldLine(b[:f.End], pos)
			if pos > f.Start {
				kv = append(kv, ' ')
			}
			kv = append(kv, trimWSP(l)...)
			pos = next
		}
		k, v, _ := bytes.Cut(kv, []byte(":"))
		if !headerKey(k) || bytes.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return
		}
		fn(k, bytes.TrimLeft(v, " \t"))
	}
}

// fieldLine returns the line at pos without its ending (LF, or CRLF) and
// where the next one starts: mailhdr's LF mode, one line at a time.
func fieldLine(b []byte, pos int) (text []byte, next int) {
	rest := b[pos:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return rest, len(b)
	}
	return bytes.TrimSuffix(rest[:i], []byte("\r")), pos + i + 1
}

// trimWSP trims spaces and tabs at both ends.
func trimWSP(b []byte) []byte { return bytes.Trim(b, " \t") }

// headerKey reports whether k is a field name net/textproto accepts:
// token characters, and spaces (kept, not canonicalised).
func headerKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if c != ' ' && !(c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0)) {
			return false
		}
	}
	return true
}

// canonicalIs reports whether textproto.CanonicalMIMEHeaderKey(k) is
// canon (a canonical key of letters and dashes) without allocating the
// key: a name canonicalisation leaves alone (a space, a byte outside the
// token set) cannot equal it, and any other canonicalises by ASCII case
// (not Unicode folding, under which "ſubject" would match).
func canonicalIs(k []byte, canon string) bool {
	if len(k) != len(canon) {
		return false
	}
	for i, c := range k {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		d := canon[i]
		if 'a' <= d && d <= 'z' {
			d -= 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// headerSummary extracts Subject and Message-ID for the message log. A
// malformed header block is not an error: the message is relayed as is.
func headerSummary(body []byte) (subject, messageID string) {
	seenSubject, seenID := false, false
	walkHeader(body, func(k, v []byte) {
		switch {
		case !seenSubject && canonicalIs(k, "Subject"):
			subject, seenSubject = string(v), true
		case !seenID && canonicalIs(k, "Message-Id"):
			messageID, seenID = string(v), true
		}
	})
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	if len(subject) > 998 {
		subject = subject[:998]
	}
	return subject, strings.Trim(messageID, "<> ")
}
