package smtp

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// Send relays one message over a pooled session. Recipients the upstream
// refuses at RCPT, with 5xx or 4xx, are listed in Result.Refused while
// the others go on; when none is accepted the attempt fails at PhaseRcpt.
// A session that saw any failure is closed rather than pooled.
//
// body should be CRLF-terminated lines, as shaped by relay; go-smtp
// dot-stuffs it, turns a bare LF into CRLF and ends an unterminated last
// line with CRLF, so for such bodies the upstream receives exactly body.
func (p *Provider) Send(ctx context.Context, env relay.Envelope, body []byte) (*relay.Result, error) {
	if derr := checkEnvelope(env); derr != nil {
		return nil, derr
	}
	pc, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	res, derr := p.transact(ctx, pc, env, body)
	if derr != nil && pc.reused && derr.Failure.Phase == routing.PhaseMail && derr.Failure.Code == 0 && ctx.Err() == nil {
		// A pooled session the upstream had closed: nothing was sent, so
		// one fresh connection, in the same slot, gets the message instead.
		if pc, err = p.redial(ctx, pc); err != nil {
			return nil, err
		}
		res, derr = p.transact(ctx, pc, env, body)
	}
	if derr != nil {
		// After a complete reply the session is sound and can be left
		// with a QUIT; after a network error there is nobody to tell.
		p.discard(pc, derr.Failure.Code != 0)
		return nil, derr
	}
	p.release(pc)
	return res, nil
}

// transact runs MAIL, RCPT…, DATA on a session bound to ctx.
func (p *Provider) transact(ctx context.Context, pc *pconn, env relay.Envelope, body []byte) (*relay.Result, *relay.DeliveryError) {
	c := pc.client
	opts := &gosmtp.MailOptions{Size: int64(len(body))}
	if !isASCII(env.From) || !allASCII(env.To) {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return nil, refuse(routing.PhaseMail, "upstream does not support SMTPUTF8, needed for a non-ASCII address")
		}
		opts.UTF8 = true
	}
	if ok, _ := c.Extension("PIPELINING"); ok {
		return p.transactPipelined(ctx, pc, env, body, opts)
	}
	if err := c.Mail(env.From, opts); err != nil {
		return nil, fail(ctx, routing.PhaseMail, err, false)
	}
	var refused []relay.RecipientReply
	for _, rcpt := range env.To {
		err := c.Rcpt(rcpt, nil)
		if err == nil {
			continue
		}
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) {
			derr := fail(ctx, routing.PhaseRcpt, err, false)
			derr.RcptRefused = refused
			return nil, derr
		}
		refused = append(refused, recipientReply(rcpt, se))
	}
	if len(refused) == len(env.To) {
		return nil, allRefused(refused)
	}
	if derr := env.BeforeData(); derr != nil {
		return nil, derr
	}
	reply, derr := p.data(ctx, pc, body)
	if derr != nil {
		derr.RcptRefused = refused
		return nil, derr
	}
	return &relay.Result{UpstreamID: queuedAs(reply), Reply: "250 " + reply, Refused: refused}, nil
}

// transactPipelined is transact for an upstream that advertises
// PIPELINING (RFC 2920): MAIL, every RCPT and DATA go in one write and
// their replies are read together, one round trip instead of two plus one
// per recipient. The data mark is written after the 354 and before the
// body: until the body's final dot the upstream cannot have accepted
// anything (a session that ends inside DATA delivers nothing), so a
// crash before the mark is an interrupted attempt, as before DATA.
func (p *Provider) transactPipelined(ctx context.Context, pc *pconn, env relay.Envelope, body []byte, opts *gosmtp.MailOptions) (*relay.Result, *relay.DeliveryError) {
	res, err := pc.client.MailRcptData(env.From, opts, env.To)
	var refused []relay.RecipientReply
	if res != nil && !isSMTPError(err) { // after a refused MAIL, RCPT replies say nothing of the recipient
		for i, rerr := range res.RcptErrs {
			var se *gosmtp.SMTPError
			if errors.As(rerr, &se) {
				refused = append(refused, recipientReply(env.To[i], se))
			}
		}
	}
	if err != nil {
		// MAIL refused, or the session broke: the phase is the reply
		// that was not read (a pooled session the upstream had closed
		// fails before the first, at PhaseMail, and is redialled).
		phase := routing.PhaseMail
		if res != nil && res.Replies > 0 && !isSMTPError(err) {
			phase = routing.PhaseRcpt
			if res.Replies > len(env.To) {
				phase = routing.PhaseData
			}
		}
		derr := fail(ctx, phase, err, false)
		derr.RcptRefused = refused
		return nil, derr
	}
	if len(refused) == len(env.To) {
		return nil, allRefused(refused)
	}
	if res.Data == nil {
		derr := fail(ctx, routing.PhaseData, res.DataErr, false)
		derr.RcptRefused = refused
		return nil, derr
	}
	if derr := env.BeforeData(); derr != nil {
		// Inside DATA with no way back but closing: the caller drops
		// the session (no reply code), so no body is ever completed.
		return nil, derr
	}
	reply, derr := p.body(ctx, pc, res.Data, body)
	if derr != nil {
		derr.RcptRefused = refused
		return nil, derr
	}
	return &relay.Result{UpstreamID: queuedAs(reply), Reply: "250 " + reply, Refused: refused}, nil
}

func isSMTPError(err error) bool {
	var se *gosmtp.SMTPError
	return errors.As(err, &se)
}

// data sends DATA and the body and reads the final reply.
func (p *Provider) data(ctx context.Context, pc *pconn, body []byte) (string, *relay.DeliveryError) {
	w, err := pc.client.Data()
	if err != nil {
		return "", fail(ctx, routing.PhaseData, err, false)
	}
	return p.body(ctx, pc, w, body)
}

// body writes the body after a 354 and reads the final reply. The body
// counts as sent once the final dot was written without error: a failure
// to read the reply after that is "uncertain", the upstream may have
// taken it.
func (p *Provider) body(ctx context.Context, pc *pconn, w *gosmtp.DataCommand, body []byte) (string, *relay.DeliveryError) {
	pc.conn.setOp(time.Now().Add(p.cfg.DataTimeout))
	defer pc.conn.setOp(time.Time{})
	pc.conn.wfail.Store(false)
	if _, err := w.Write(body); err != nil {
		return "", fail(ctx, routing.PhaseData, err, false)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *gosmtp.SMTPError
		if !errors.As(err, &se) && pc.conn.wfail.Load() {
			// The final dot did not go out: nothing can have been accepted.
			return "", fail(ctx, routing.PhaseData, err, false)
		}
		return "", fail(ctx, routing.PhaseFinal, err, true)
	}
	return strings.ReplaceAll(resp.StatusText, "\n", " "), nil
}

// checkEnvelope refuses addresses that would break the SMTP command line.
func checkEnvelope(env relay.Envelope) *relay.DeliveryError {
	if len(env.To) == 0 {
		return refuse(routing.PhaseRcpt, "no recipients")
	}
	if strings.ContainsAny(env.From, "\r\n<>") {
		return refuse(routing.PhaseMail, "invalid sender %q", env.From)
	}
	for _, r := range env.To {
		if r == "" || strings.ContainsAny(r, "\r\n<>") {
			return refuse(routing.PhaseRcpt, "invalid recipient %q", r)
		}
	}
	return nil
}

// queuedAsRE finds the queue id in replies like "2.0.0 Ok: queued as 4Xyz".
var queuedAsRE = regexp.MustCompile(`(?i)\bqueued as ([^\s;,()<>]+)`)

// queuedAs returns the upstream's queue id from a final reply, if any.
func queuedAs(reply string) string {
	if m := queuedAsRE.FindStringSubmatch(reply); m != nil {
		return m[1]
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(ss []string) bool {
	for _, s := range ss {
		if !isASCII(s) {
			return false
		}
	}
	return true
}
