package ses

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// Send hands one message to SES with SendEmail and raw content.
//
// body goes out unchanged (relay shaped and possibly DKIM-signed it), and
// the recipients are the envelope's, not the headers': SES delivers to
// Destination only, so Bcc recipients, which appear in no header, arrive
// too. The envelope sender, when set, is FromEmailAddress; otherwise SES
// takes the From header.
//
// SES accepts or refuses the message as a whole, so Result.Refused is
// always empty; a refusal is a *relay.DeliveryError with its class set.
func (p *Provider) Send(ctx context.Context, env relay.Envelope, body []byte) (*relay.Result, error) {
	if derr := checkEnvelope(env); derr != nil {
		return nil, derr
	}
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	in := &sesv2.SendEmailInput{
		Content: &types.EmailContent{Raw: &types.RawMessage{Data: body}},
		// Copied: the SDK must not hold the caller's slice.
		Destination: &types.Destination{ToAddresses: append([]string(nil), env.To...)},
	}
	if env.From != "" {
		in.FromEmailAddress = aws.String(env.From)
	}
	if p.cfg.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(p.cfg.ConfigurationSet)
	}
	var tr attemptTrace
	if derr := env.BeforeData(); derr != nil {
		return nil, derr
	}
	out, err := p.client.SendEmail(tr.with(ctx), in)
	if err != nil {
		return nil, fail(ctx, err, &tr, true)
	}
	id := aws.ToString(out.MessageId)
	return &relay.Result{UpstreamID: id, Reply: "SES accepted MessageId=" + id}, nil
}

// checkEnvelope refuses envelopes SES could only reject, before spending
// a request (and a rate-limit slot) on them.
func checkEnvelope(env relay.Envelope) *relay.DeliveryError {
	if len(env.To) == 0 {
		return refuse(routing.PhaseRcpt, "no recipients")
	}
	if strings.ContainsAny(env.From, "\r\n") {
		return refuse(routing.PhaseMail, "invalid sender %q", env.From)
	}
	for _, r := range env.To {
		if strings.TrimSpace(r) == "" || strings.ContainsAny(r, "\r\n") {
			return refuse(routing.PhaseRcpt, "invalid recipient %q", r)
		}
	}
	return nil
}

// Test checks the credentials with GetAccount, the cheapest authenticated
// SES call, and returns its latency. Failures are *relay.DeliveryError
// with the same classes as Send (bad keys read as Auth).
func (p *Provider) Test(ctx context.Context) (time.Duration, error) {
	latency, _, err := p.TestDetail(ctx)
	return latency, err
}

// TestDetail is Test plus a one-line summary of the account for the
// operator (POST /providers/{id}/test "message"): the sending quota, the
// rate, what was sent in the last 24 h, and warnings for a sandboxed
// account. An account whose sending is disabled fails the test (class
// Auth): every send would be refused until someone acts.
func (p *Provider) TestDetail(ctx context.Context) (time.Duration, string, error) {
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	var tr attemptTrace
	start := time.Now()
	out, err := p.client.GetAccount(tr.with(ctx), &sesv2.GetAccountInput{})
	latency := time.Since(start)
	if err != nil {
		return latency, "", fail(ctx, err, &tr, false)
	}
	msg := accountSummary(out)
	if !out.SendingEnabled {
		reason := "SES account: sending is disabled"
		if s := aws.ToString(out.EnforcementStatus); s != "" {
			reason += " (enforcement status " + s + ")"
		}
		return latency, msg, &relay.DeliveryError{
			Failure: routing.Failure{Phase: routing.PhaseAuth, Text: reason},
			Class:   relay.ClassPtr(routing.Auth),
			Err:     errors.New(reason),
		}
	}
	return latency, msg, nil
}

// accountSummary renders GetAccount's answer in one line, e.g.
// "SES account reachable: quota 50000 per 24h, max 14/s, sent 120 in the
// last 24h".
func accountSummary(out *sesv2.GetAccountOutput) string {
	var b strings.Builder
	b.WriteString("SES account reachable")
	if q := out.SendQuota; q != nil {
		quota := num(q.Max24HourSend)
		if q.Max24HourSend < 0 {
			quota = "unlimited"
		}
		fmt.Fprintf(&b, ": quota %s per 24h, max %s/s, sent %s in the last 24h",
			quota, num(q.MaxSendRate), num(q.SentLast24Hours))
	}
	if !out.ProductionAccessEnabled {
		b.WriteString("; sandbox (only verified recipients)")
	}
	if !out.SendingEnabled {
		b.WriteString("; sending disabled")
	}
	if s := aws.ToString(out.EnforcementStatus); s != "" && !strings.EqualFold(s, "HEALTHY") {
		b.WriteString("; enforcement status " + s)
	}
	return b.String()
}

// num prints SES's float counters without a spurious ".000000".
func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
