package ses

import (
	"context"
	"strings"

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
