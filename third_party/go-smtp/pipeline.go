package smtp

import (
	"errors"
	"time"
)

// smtpmux patch 11: a mail transaction's envelope in one round trip
// (RFC 2920 PIPELINING). Mail, Rcpt and Data each wait for their reply,
// so a relay spent three round trips (and three writes and reads on each
// side) before the body; with PIPELINING they go in one write.

// PipelineResult is what MailRcptData read back.
type PipelineResult struct {
	// Replies is how many of the replies (MAIL, each RCPT, DATA) were
	// read: on a network error, where it happened.
	Replies int
	// RcptErrs has one entry per recipient: nil when accepted, else its
	// *SMTPError.
	RcptErrs []error
	// Data takes the body when the server answered DATA with 354, as the
	// DataCommand of Data does.
	Data *DataCommand
	// DataErr is DATA's error when Data is nil.
	DataErr error
}

// ErrNoPipelining is MailRcptData's error when the server does not
// advertise PIPELINING; nothing was sent.
var ErrNoPipelining = errors.New("smtp: server does not support PIPELINING")

// MailRcptData starts a mail transaction: MAIL, one RCPT per recipient and
// DATA are written at once, then their replies read in order. The server
// must advertise PIPELINING (else ErrNoPipelining, and nothing is sent).
//
// err is MAIL's *SMTPError (also when the server hung up after it), or
// any other error, after which nothing can be said about the session
// (the result, when not nil, tells how many replies were read). With a nil err the transaction is open: the result
// says which recipients were accepted and whether DATA was (Data), and
// the caller writes the body into Data and closes it, or, when DATA was
// refused, the session is ready for the next transaction (after Reset).
//
// A server that answers DATA with 354 although MAIL or every RCPT was
// refused gets an empty body ending (".", RFC 2920 section 3.1), so the
// session stays in step, and DataErr reports it.
func (c *Client) MailRcptData(from string, opts *MailOptions, rcpts []string) (*PipelineResult, error) {
	if err := c.hello(); err != nil {
		return nil, err
	}
	if _, ok := c.ext["PIPELINING"]; !ok {
		return nil, ErrNoPipelining
	}
	mail, err := c.mailLine(from, opts)
	if err != nil {
		return nil, err
	}
	lines := make([]string, 0, len(rcpts)+2)
	lines = append(lines, mail)
	for _, to := range rcpts {
		line, err := c.rcptLine(to, nil)
		if err != nil {
			return nil, err
		}
		lines = append(lines, line)
	}
	lines = append(lines, "DATA")

	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	defer c.conn.SetDeadline(time.Time{})
	w := c.text.W
	for _, line := range lines {
		w.WriteString(line)
		w.WriteString("\r\n")
	}
	res := &PipelineResult{RcptErrs: make([]error, len(rcpts))}
	if err := w.Flush(); err != nil {
		return res, err
	}
	// Every reply is read, whatever the ones before said: the server
	// answers each command sent. Each reply gets CommandTimeout, as each
	// command does unpipelined: a server that takes its time over every
	// RCPT (verification, tarpitting) must not fail a long envelope that
	// it would have taken one command at a time.
	read := func(expect int) error {
		c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
		_, _, err := c.readResponse(expect)
		return err
	}
	mailErr := read(250)
	if mailErr != nil && !isSMTPError(mailErr) {
		return res, mailErr
	}
	res.Replies++
	c.rcpts = nil
	// broken is the error for a session that broke after MAIL's reply:
	// a server that refused MAIL may hang up before answering the rest,
	// and then MAIL's refusal, not the hang-up, is what went wrong (as
	// it is when MAIL is sent alone).
	broken := func(err error) error {
		if mailErr != nil {
			return mailErr
		}
		return err
	}
	for i, to := range rcpts {
		err := read(25)
		if err != nil && !isSMTPError(err) {
			return res, broken(err)
		}
		res.Replies++
		res.RcptErrs[i] = err
		if err == nil {
			c.rcpts = append(c.rcpts, to)
		}
	}
	dataErr := read(354)
	if dataErr != nil && !isSMTPError(dataErr) {
		return res, broken(dataErr)
	}
	res.Replies++
	switch {
	case dataErr != nil:
		res.DataErr = dataErr
	case mailErr != nil || len(c.rcpts) == 0:
		// Nothing to send: end the body at once; the server's reply to
		// that is refused or meaningless either way.
		w.WriteString(".\r\n")
		if err := w.Flush(); err != nil {
			return res, broken(err)
		}
		if err := read(250); err != nil && !isSMTPError(err) {
			return res, broken(err)
		}
		res.DataErr = errors.New("smtp: server accepted DATA without a valid MAIL and RCPT")
	default:
		res.Data = &DataCommand{client: c, wc: newDotWriter(w)}
	}
	if mailErr != nil {
		return res, mailErr
	}
	return res, nil
}

func isSMTPError(err error) bool {
	var se *SMTPError
	return errors.As(err, &se)
}
