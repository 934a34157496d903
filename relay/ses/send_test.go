package ses

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

func TestSendDeliversRawMessage(t *testing.T) {
	f := newFakeSES(t)
	cfg := f.config()
	cfg.ConfigurationSet = "transactional"
	p := newProvider(t, cfg)
	// carol is a Bcc recipient: in the envelope, in no header.
	env := envelope("bob@example.net", "carol@example.org")
	res, err := p.Send(ctxTimeout(t, 5*time.Second), env, []byte(message))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	n, sends := f.stats()
	if n != 1 || len(sends) != 1 {
		t.Fatalf("fake saw %d requests, %d sends; want 1", n, len(sends))
	}
	got := sends[0]
	if !bytes.Equal(got.raw, []byte(message)) {
		t.Errorf("raw message = %q\nwant %q", got.raw, message)
	}
	if !slices.Equal(got.req.Destination.ToAddresses, env.To) ||
		len(got.req.Destination.CcAddresses)+len(got.req.Destination.BccAddresses) != 0 {
		t.Errorf("destination = %+v, want To %v", got.req.Destination, env.To)
	}
	if got.req.FromEmailAddress == nil || *got.req.FromEmailAddress != env.From {
		t.Errorf("FromEmailAddress = %v, want %q", got.req.FromEmailAddress, env.From)
	}
	if got.req.ConfigurationSetName != "transactional" || got.keyID != testKeyID {
		t.Errorf("configuration set %q, signed by %q", got.req.ConfigurationSetName, got.keyID)
	}
	if res.UpstreamID != got.messageID || res.Reply != "SES accepted MessageId="+got.messageID || len(res.Refused) != 0 {
		t.Errorf("result = %+v, fake id %s", res, got.messageID)
	}
}

func TestSendNullSenderOmitsFrom(t *testing.T) {
	f := newFakeSES(t)
	p := newProvider(t, f.config())
	env := envelope()
	env.From = ""
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), env, []byte(message)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	_, sends := f.stats()
	if len(sends) != 1 || sends[0].req.FromEmailAddress != nil || sends[0].req.ConfigurationSetName != "" {
		t.Fatalf("sends = %+v, want one without FromEmailAddress and configuration set", sends)
	}
}

func TestSendErrorMapping(t *testing.T) {
	const suffix = ":http://internal.amazon.com/coral/com.amazonaws.sesv2/"
	throttle := reply{status: 429, errType: "TooManyRequestsException" + suffix, message: "Maximum sending rate exceeded."}
	for _, tc := range []struct {
		name     string
		always   *reply
		script   []reply
		requests int // how many requests reached SES (retries included)
		want     *want
	}{
		{name: "throttled, retried, still throttled", always: &throttle, requests: throttleAttempts,
			want: &want{class: routing.Quota, phase: routing.PhaseAPI, code: 429, text: "TooManyRequestsException: Maximum sending rate exceeded."}},
		{name: "throttled once, then accepted", script: []reply{throttle}, requests: 2},
		{name: "v1-style Throttling text", always: &reply{status: 400, errType: "Throttling", message: "Maximum sending rate exceeded."},
			requests: throttleAttempts, want: &want{class: routing.Quota, phase: routing.PhaseAPI, code: 400}},
		{name: "daily quota is not retried", always: &reply{status: 400, errType: "LimitExceededException", message: "Daily message quota exceeded."},
			requests: 1, want: &want{class: routing.Quota, phase: routing.PhaseAPI, code: 400, text: "Daily message quota exceeded"}},
		{name: "sending paused", always: &reply{status: 400, errType: "SendingPausedException", message: "Sending is paused for this account."},
			requests: 1, want: &want{class: routing.Quota, phase: routing.PhaseAPI, code: 400}},
		{name: "message rejected", always: &reply{status: 400, errType: "MessageRejected" + suffix, message: "Email address is not verified."},
			requests: 1, want: &want{class: routing.Permanent, phase: routing.PhaseAPI, code: 400, text: "MessageRejected: Email address is not verified."}},
		{name: "mail-from domain not verified", always: &reply{status: 400, errType: "MailFromDomainNotVerifiedException", message: "not verified"},
			requests: 1, want: &want{class: routing.Permanent, phase: routing.PhaseAPI, code: 400}},
		{name: "bad request", always: &reply{status: 400, bodyTyp: "BadRequestException", message: "Illegal header"},
			requests: 1, want: &want{class: routing.Permanent, phase: routing.PhaseAPI, code: 400, text: "BadRequestException: Illegal header"}},
		{name: "account suspended", always: &reply{status: 400, errType: "AccountSuspendedException", message: "suspended"},
			requests: 1, want: &want{class: routing.Auth, phase: routing.PhaseAPI, code: 400}},
		{name: "configuration set missing", always: &reply{status: 404, errType: "NotFoundException", message: "Configuration set does not exist."},
			requests: 1, want: &want{class: routing.Auth, phase: routing.PhaseAPI, code: 404}},
		{name: "access denied", always: &reply{status: 403, errType: "AccessDeniedException", message: "not authorized to perform ses:SendEmail"},
			requests: 1, want: &want{class: routing.Auth, phase: routing.PhaseAPI, code: 403}},
		{name: "500 is not retried", always: &reply{status: 500, bodyTyp: "InternalFailure", message: "internal error"},
			requests: 1, want: &want{class: routing.Transient, phase: routing.PhaseAPI, code: 500, text: "InternalFailure"}},
		{name: "proxy 502 page", always: &reply{status: 502, raw: "<html>Bad Gateway</html>"},
			requests: 1, want: &want{class: routing.Transient, phase: routing.PhaseAPI, code: 502}},
		{name: "unknown code", always: &reply{status: 409, errType: "ConcurrentModificationException", message: "busy"},
			requests: 1, want: &want{class: routing.Transient, phase: routing.PhaseAPI, code: 409}},
		{name: "dropped after the body", always: &reply{drop: true},
			requests: 1, want: &want{class: routing.Uncertain, phase: routing.PhaseFinal, bodySent: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSES(t)
			if tc.always != nil {
				f.setAlways(*tc.always)
			}
			f.setScript(tc.script...)
			p := newProvider(t, f.config())
			res, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(message))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if res.UpstreamID == "" {
					t.Errorf("result %+v without MessageId", res)
				}
			} else {
				tc.want.check(t, err)
			}
			if n, _ := f.stats(); n != tc.requests {
				t.Errorf("SES saw %d requests, want %d", n, tc.requests)
			}
		})
	}
}

func TestSendHangIsUncertain(t *testing.T) {
	f := newFakeSES(t)
	f.setAlways(reply{hang: true})
	p := newProvider(t, f.config())
	_, err := p.Send(ctxTimeout(t, 300*time.Millisecond), envelope(), []byte(message))
	want{class: routing.Uncertain, phase: routing.PhaseFinal, bodySent: true}.check(t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v does not wrap context.DeadlineExceeded", err)
	}
	if n, _ := f.stats(); n != 1 {
		t.Errorf("SES saw %d requests, want 1 (never resent)", n)
	}
}

// Near the deadline a throttle is not retried: a retry cut off after its
// body went out would be uncertain, the throttle itself is retried later.
func TestSendNoThrottleRetryNearDeadline(t *testing.T) {
	f := newFakeSES(t)
	f.setAlways(reply{status: 429, errType: "TooManyRequestsException", message: "Maximum sending rate exceeded."})
	p := newProvider(t, f.config())
	_, err := p.Send(ctxTimeout(t, minRetryBudget-100*time.Millisecond), envelope(), []byte(message))
	want{class: routing.Quota, phase: routing.PhaseAPI, code: 429, text: "TooManyRequestsException"}.check(t, err)
	if n, _ := f.stats(); n != 1 {
		t.Errorf("SES saw %d requests, want 1", n)
	}
}

// A call canceled during the backoff after a throttle (the SDK then
// reports only the cancellation) still reads as the throttle.
func TestFailAfterCanceledBackoff(t *testing.T) {
	f := newFakeSES(t)
	f.setAlways(reply{status: 429, errType: "TooManyRequestsException", message: "Maximum sending rate exceeded."})
	p := newProvider(t, f.config())
	var tr attemptTrace
	_, throttled := p.client.SendEmail(tr.with(ctxTimeout(t, time.Second)), sendInput())
	if httpStatus(throttled) != 429 {
		t.Fatalf("setup: %v", throttled)
	}
	tr.rejected.Store(&throttled) // as sendRetryer does before sleeping
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := fail(ctx, &aws.RequestCanceledError{Err: context.Canceled}, &tr, true)
	want{class: routing.Quota, phase: routing.PhaseAPI, code: 429}.check(t, err)
}

func sendInput() *sesv2.SendEmailInput {
	return &sesv2.SendEmailInput{
		Content:     &types.EmailContent{Raw: &types.RawMessage{Data: []byte(message)}},
		Destination: &types.Destination{ToAddresses: []string{"bob@example.net"}},
	}
}

func TestSendBadCredentials(t *testing.T) {
	f := newFakeSES(t)
	for _, tc := range []struct {
		name, key, secret, code string
	}{
		{"wrong secret", testKeyID, "not-the-secret", "SignatureDoesNotMatch"},
		{"unknown key", "AKIDUNKNOWN", testSecret, "UnrecognizedClientException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			cfg.AccessKeyID, cfg.SecretAccessKey = tc.key, tc.secret
			p := newProvider(t, cfg)
			_, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(message))
			want{class: routing.Auth, phase: routing.PhaseAPI, code: 403, text: tc.code}.check(t, err)
		})
	}
	if _, sends := f.stats(); len(sends) != 0 {
		t.Errorf("fake accepted %d messages with bad credentials", len(sends))
	}
}

func TestSendConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newProvider(t, Config{Region: testRegion, AccessKeyID: testKeyID, SecretAccessKey: testSecret, Endpoint: "http://" + addr})
	_, err = p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(message))
	want{class: routing.Connection, phase: routing.PhaseConnect}.check(t, err)
}

// A peer that accepts but never reads: a body larger than the socket
// buffers cannot be written, so the timeout hits before it left and the
// attempt is a plain connection failure, safe to retry elsewhere.
func TestSendTimeoutBeforeBodySent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	p := newProvider(t, Config{Region: testRegion, AccessKeyID: testKeyID, SecretAccessKey: testSecret,
		Endpoint: "http://" + ln.Addr().String()})
	big := message + strings.Repeat("0123456789abcdef", 1<<19) // 8 MiB, 11 MB as base64
	_, err = p.Send(ctxTimeout(t, 2*time.Second), envelope(), []byte(big))
	// Normally the timeout hits while the body is being written
	// (PhaseData); on a loaded machine it may hit before the connection
	// (PhaseConnect). Either way nothing left and the class is the same.
	var derr *relay.DeliveryError
	if errors.As(err, &derr) && derr.Failure.Phase == routing.PhaseConnect {
		t.Log("timed out before connecting (slow machine)")
		want{class: routing.Connection, phase: routing.PhaseConnect}.check(t, err)
	} else {
		want{class: routing.Connection, phase: routing.PhaseData}.check(t, err)
	}
	ln.Close()
	for c := range accepted {
		conns = append(conns, c)
	}
}

func TestSendRefusesBadEnvelopeLocally(t *testing.T) {
	f := newFakeSES(t)
	p := newProvider(t, f.config())
	for _, tc := range []struct {
		from  string
		to    []string
		phase routing.Phase
	}{
		{"a@example.com", nil, routing.PhaseRcpt},
		{"a@example.com", []string{" "}, routing.PhaseRcpt},
		{"a@example.com", []string{"b@example.com\r\nX: y"}, routing.PhaseRcpt},
		{"a@example.com\n", []string{"b@example.com"}, routing.PhaseMail},
	} {
		env := relay.Envelope{MessageID: "eml_test", From: tc.from, To: tc.to}
		_, err := p.Send(context.Background(), env, []byte(message))
		want{class: routing.Permanent, phase: tc.phase}.check(t, err)
	}
	if n, _ := f.stats(); n != 0 {
		t.Errorf("SES saw %d requests for invalid envelopes", n)
	}
}
