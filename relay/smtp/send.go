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

// data sends DATA and the body and reads the final reply. The body counts
// as sent once the final dot was written without error: a failure to read
// the reply after that is "uncertain", the upstream may have taken it.
func (p *Provider) data(ctx context.Context, pc *pconn, body []byte) (string, *relay.DeliveryError) {
	w, err := pc.client.Data()
	if err != nil {
		return "", fail(ctx, routing.PhaseData, err, false)
	}
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
