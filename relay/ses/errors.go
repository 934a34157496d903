package ses

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/aws/smithy-go"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// SES error codes mapped into routing's classification table (as RFC 3463
// enhanced codes; see mailapi's Enhanced* for what each one names). SES v2
// names its modelled errors in the sesv2 types package; the auth codes come
// from the AWS front end (SigV4 and IAM) and are not modelled there, so
// they arrive as generic API errors with the same ErrorCode. A code not
// listed is left to the table's reading of the HTTP status and, for a 4xx,
// the wording (unknown is temporary).
var apiCodes = map[string]string{
	// The account's sending rate or quota is exhausted, or SES paused
	// sending for the account or configuration set: the provider is
	// blocked for a while instead of retried into.
	"TooManyRequestsException": enhancedQuota, "LimitExceededException": enhancedQuota,
	"Throttling": enhancedQuota, "ThrottlingException": enhancedQuota, "SendingPausedException": enhancedQuota,

	// The credentials or their permissions are unusable.
	"InvalidClientTokenId": enhancedCredentials, "SignatureDoesNotMatch": enhancedCredentials,
	"AccessDenied": enhancedCredentials, "AccessDeniedException": enhancedCredentials,
	"UnrecognizedClientException": enhancedCredentials, "ExpiredToken": enhancedCredentials,
	"ExpiredTokenException": enhancedCredentials, "NotAuthorizedException": enhancedCredentials,
	"InvalidSignatureException": enhancedCredentials, "IncompleteSignature": enhancedCredentials,
	"MissingAuthenticationToken": enhancedCredentials, "MissingAuthenticationTokenException": enhancedCredentials,
	"InvalidAccessKeyId": enhancedCredentials,
	// The account refuses every message until the operator sorts it out
	// (status error, manual recovery). NotFoundException on SendEmail
	// means the configured configuration set does not exist: a provider
	// setting.
	"OptInRequired": enhancedAccount, "AccountSuspendedException": enhancedAccount, "NotFoundException": enhancedAccount,

	// SES refused this message; the same bytes would be refused again.
	// MessageRejected is SES's policy catch-all ("Email address is not
	// verified."); as x.7.x its wording may still say the account is over
	// its quota, which SES v1 reported this way too.
	"MessageRejected":                    "5.7.1",
	"MailFromDomainNotVerifiedException": "5.7.1", // the sender's identity
	"BadRequestException":                "5.6.0", // the request built from this message
	"InvalidParameterValue":              "5.6.0",
	"ValidationException":                "5.6.0",
	"SerializationException":             "5.6.0",
}

// The enhanced codes routing reads as an account limit, refused
// credentials and an unusable account (the same as mailapi's).
const (
	enhancedQuota       = "4.4.5"
	enhancedCredentials = "5.7.8"
	enhancedAccount     = "5.7.13"
)

// apiFailure maps an SES error answer into routing's table.
func apiFailure(status int, code, msg string) routing.Failure {
	return routing.Failure{Phase: routing.PhaseAPI, Code: status, Enhanced: apiCodes[code], Text: apiText(status, code, msg)}
}

// httpStatus is the status of the response the SDK got, or 0 when none
// arrived (the SDK wraps transport failures in a ResponseError too, with a
// placeholder response of status 0).
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// attemptTrace follows one call's HTTP exchange, to tell a request that
// never left from one that SES may have received. It is reset on every
// connection so that, after a retried throttle, only the last try counts.
type attemptTrace struct {
	connected atomic.Bool // a connection was obtained
	wrote     atomic.Bool // the whole request, body included, was written
	// rejected is the answer that made the retryer try again. When the
	// context ends during the backoff, the SDK returns only a
	// cancellation; this keeps the fact that SES refused the request.
	rejected atomic.Pointer[error]
}

type traceKey struct{}

// with returns ctx carrying hooks that update t, and t itself for the
// retryer (see sendRetryer).
func (t *attemptTrace) with(ctx context.Context) context.Context {
	ctx = context.WithValue(ctx, traceKey{}, t)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			t.connected.Store(true)
			t.wrote.Store(false)
			t.rejected.Store(nil)
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				t.wrote.Store(true)
			}
		},
	})
}

// fail turns an SDK error into a DeliveryError with an explicit class.
// sending is true for SendEmail: only then can a lost reply mean that the
// message may have been accepted (Uncertain); for a Test it is a
// connection failure like any other.
func fail(ctx context.Context, err error, t *attemptTrace, sending bool) *relay.DeliveryError {
	wrapped := fmt.Errorf("ses: %w", err)
	derr := func(class routing.Class, f routing.Failure) *relay.DeliveryError {
		return &relay.DeliveryError{Failure: f, Class: relay.ClassPtr(class), Err: wrapped}
	}
	var ce *credentialsError
	if errors.As(err, &ce) && ctx.Err() == nil {
		return derr(routing.Auth, routing.Failure{Phase: routing.PhaseAuth, Text: ce.Error()})
	}
	if errors.Is(err, netpolicy.ErrRefused) {
		// The dialer refused an internal address: a setting to fix, not
		// a network problem to retry. Its own text, without the address.
		return &relay.DeliveryError{Failure: routing.Failure{Phase: routing.PhaseConnect, Text: netpolicy.ErrRefused.Error()},
			Class: relay.ClassPtr(routing.Auth), Err: fmt.Errorf("ses: %w", netpolicy.ErrRefused)}
	}
	var ipe *smithy.InvalidParamsError
	if errors.As(err, &ipe) {
		// The SDK refused the request locally: this message cannot go.
		return derr(routing.Permanent, routing.Failure{Phase: routing.PhaseMail, Text: ipe.Error()})
	}

	status := httpStatus(err)
	if rej := t.rejected.Load(); status == 0 && rej != nil {
		// Interrupted while backing off after a refusal: the refusal is
		// the outcome, nothing was accepted.
		err = *rej
		status = httpStatus(err)
	}
	if status != 0 {
		if status >= 200 && status < 300 {
			// SES said yes but the reply could not be read: it has the
			// message, we lack its id. Never resend.
			if !sending {
				return derr(routing.Transient, routing.Failure{Phase: routing.PhaseFinal,
					Text: fmt.Sprintf("unreadable %d reply", status)})
			}
			return derr(routing.Uncertain, routing.Failure{Phase: routing.PhaseFinal, BodySent: true,
				Text: fmt.Sprintf("SES answered %d but the reply could not be read; not resending", status)})
		}
		code, msg := "", ""
		var ae smithy.APIError
		if errors.As(err, &ae) {
			code, msg = ae.ErrorCode(), ae.ErrorMessage()
		}
		// routing's table decides. PhaseAPI, not PhaseFinal: SES refused
		// the request as a whole, so the attempt did not consume the
		// upstream's quota.
		return &relay.DeliveryError{Failure: apiFailure(status, code, msg), Err: wrapped}
	}

	// No response. Whether the request left decides between "retry
	// elsewhere" and "may be delivered, never resend".
	switch {
	case sending && t.wrote.Load():
		return derr(routing.Uncertain, routing.Failure{Phase: routing.PhaseFinal, BodySent: true,
			Text: "no reply from SES after the message was sent; not resending"})
	case t.connected.Load():
		return derr(routing.Connection, routing.Failure{Phase: routing.PhaseData})
	}
	return derr(routing.Connection, routing.Failure{Phase: routing.PhaseConnect})
}

// apiText is "Code: message", or what is known when SES sent no body.
func apiText(status int, code, msg string) string {
	switch {
	case code == "" || code == "UnknownError" && (msg == "" || msg == code):
		return fmt.Sprintf("HTTP %d from SES", status)
	case msg == "" || msg == code:
		return code
	}
	return code + ": " + msg
}

// refuse is a failure decided locally about the message, not SES.
func refuse(phase routing.Phase, format string, args ...any) *relay.DeliveryError {
	err := fmt.Errorf("ses: "+format, args...)
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: phase, Text: err.Error()},
		Class:   relay.ClassPtr(routing.Permanent),
		Err:     err,
	}
}
