// Package relay is the message path of smtpmux: the inbound SMTP server
// (credential check, envelope checks, durable enqueue), the delivery
// scheduler, and the Provider interface that upstream kinds implement.
// Provider implementations live in relay/<kind> and are wired in by cmd, the
// way database/sql drivers are; relay never imports them.
package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/smtpmux/smtpmux/routing"
)

// Envelope is what a provider needs besides the message bytes.
type Envelope struct {
	MessageID string // eml_…, for logs and upstream-side correlation
	From      string // reverse path; may be empty (null sender)
	To        []string
	// MarkData, when set, durably records that the body is about to be
	// handed over. Providers call it through BeforeData once, right before
	// the point of no return (SMTP: the DATA command; HTTP APIs: the send
	// request; the outbox: the write). After a crash, an attempt that got
	// this far is never resent: the upstream may have accepted it.
	MarkData func() error
}

// BeforeData runs MarkData; a failure to record it is a temporary failure
// and the provider must not send.
func (e Envelope) BeforeData() *DeliveryError {
	if e.MarkData == nil {
		return nil
	}
	if err := e.MarkData(); err != nil {
		return &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseData}, Class: ClassPtr(routing.Transient),
			Err: fmt.Errorf("recording the start of the data phase: %w", err)}
	}
	return nil
}

// Provider delivers one message to one upstream. Implementations must be
// safe for concurrent use and must honour ctx's deadline. body is valid only
// until Send returns (large bodies are memory-mapped spool files): a
// provider must not keep it, or anything sharing its memory, afterwards.
//
// Send returns a Result when the upstream accepted the message for at least
// one recipient (recipients it refused carry their own reply in Result), and
// a *DeliveryError when the attempt as a whole failed.
type Provider interface {
	Send(ctx context.Context, env Envelope, body []byte) (*Result, error)
}

// Tester is implemented by providers that can check their connection and
// credentials without sending anything (POST /providers/{id}/test).
type Tester interface {
	Test(ctx context.Context) (time.Duration, error)
}

// Closer is implemented by providers that hold pooled connections.
type Closer interface {
	Close() error
}

// Result is the outcome of an attempt the upstream accepted.
type Result struct {
	// UpstreamID is the provider's id for the message (SES MessageId, the
	// "queued as" token of an SMTP reply, a file name), if any.
	UpstreamID string
	// Reply is the upstream's final reply, e.g. "250 2.0.0 Ok: queued as X".
	Reply string
	// Refused lists the envelope recipients the upstream refused at
	// RCPT; recipients not listed were accepted.
	Refused []RecipientReply
}

// RecipientReply is an upstream's answer for one recipient.
type RecipientReply struct {
	Rcpt     string
	Code     int
	Enhanced string
	Text     string
}

// DeliveryError is a failed attempt. Either Class is set by the provider
// (for upstreams that are not SMTP, which map their own errors), or it is
// left to routing.Classify over Failure.
type DeliveryError struct {
	Failure routing.Failure
	// Class, when non-nil, overrides routing.Classify(Failure).
	Class *routing.Class
	// RcptRefused holds per-recipient refusals seen before the failure.
	RcptRefused []RecipientReply
	Err         error
}

// Classified returns the class of the failure.
func (e *DeliveryError) Classified() routing.Class {
	if e.Class != nil {
		return *e.Class
	}
	return routing.Classify(e.Failure)
}

func (e *DeliveryError) Error() string {
	if e.Failure.Code != 0 {
		return fmt.Sprintf("%s: %d %s %s", e.Failure.Phase, e.Failure.Code, e.Failure.Enhanced, e.Failure.Text)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Failure.Phase, e.Err)
	}
	return string(e.Failure.Phase) + ": failed"
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// ClassPtr is a helper for providers that set DeliveryError.Class.
func ClassPtr(c routing.Class) *routing.Class { return &c }
