package smtp

import (
	"context"
	"errors"
	"fmt"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// ErrClosed is the cause of failures of a Send that found the provider
// closed.
var ErrClosed = errors.New("smtp: provider closed")

// fail describes a failed step. An *SMTPError carries the upstream's
// reply; anything else is a network error (Code 0). When ctx is done, its
// error is wrapped too so callers can tell a deadline from a reset.
func fail(ctx context.Context, phase routing.Phase, err error, bodySent bool) *relay.DeliveryError {
	f := routing.Failure{Phase: phase, BodySent: bodySent}
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		f.Code, f.Enhanced, f.Text = se.Code, enhanced(se.EnhancedCode), se.Message
	} else if cerr := ctxErr(ctx); cerr != nil {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	return &relay.DeliveryError{Failure: f, Err: err}
}

// ctxErr is ctx.Err(), also when the connection deadline (which is the
// context's deadline) fired a moment before the context noticed.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// configFault is a problem with how the account is set up (no STARTTLS,
// no AUTH, no usable mechanism): no retry helps until an operator acts.
func configFault(phase routing.Phase, err error) *relay.DeliveryError {
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: phase, Text: err.Error()},
		Class:   relay.ClassPtr(routing.Auth),
		Err:     err,
	}
}

// refuse is a failure decided locally about the message, not the upstream.
func refuse(phase routing.Phase, format string, args ...any) *relay.DeliveryError {
	err := fmt.Errorf("smtp: "+format, args...)
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: phase, Text: err.Error()},
		Class:   relay.ClassPtr(routing.Permanent),
		Err:     err,
	}
}

// enhanced formats an enhanced status code as "5.7.8", or "" when absent.
func enhanced(ec gosmtp.EnhancedCode) string {
	if ec == gosmtp.EnhancedCodeNotSet || ec == gosmtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
}

// recipientReply is one RCPT refusal.
func recipientReply(rcpt string, se *gosmtp.SMTPError) relay.RecipientReply {
	return relay.RecipientReply{Rcpt: rcpt, Code: se.Code, Enhanced: enhanced(se.EnhancedCode), Text: se.Message}
}

// rcptPriority orders the classes of RCPT refusals: when every recipient
// was refused, the attempt as a whole reports the refusal that matters
// most — a provider-level fault first, then anything worth retrying, and a
// permanent refusal only when all of them are.
var rcptPriority = map[routing.Class]int{
	routing.Auth: 0, routing.Quota: 1, routing.Connection: 2, routing.Transient: 3,
	routing.Uncertain: 4, routing.Permanent: 5,
}

// allRefused is the failure of a transaction where no RCPT was accepted.
func allRefused(refused []relay.RecipientReply) *relay.DeliveryError {
	var best routing.Failure
	bestRank := len(rcptPriority) + 1
	for _, r := range refused {
		f := routing.Failure{Phase: routing.PhaseRcpt, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text}
		if rank := rcptPriority[routing.Classify(f)]; rank < bestRank {
			best, bestRank = f, rank
		}
	}
	return &relay.DeliveryError{
		Failure:     best,
		RcptRefused: refused,
		Err:         fmt.Errorf("smtp: all %d recipients refused", len(refused)),
	}
}
