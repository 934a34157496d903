package mailapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/routing"
)

// GrantRevokedPrefix starts Failure.Text of the class-Auth failures that
// only reconnecting the account fixes: the refresh token was refused with
// invalid_grant, a fresh access token was still refused, or the grant
// lacks the send permission. The relay turns such a provider "pending"
// with the text as its reason (SPEC §7), where other Auth failures make
// it "error". relay cannot import this package, so it matches the text.
const GrantRevokedPrefix = "oauth_grant_revoked:"

// IsGrantRevoked reports whether err is a failure GrantRevoked built.
func IsGrantRevoked(err error) bool {
	var de *relay.DeliveryError
	return errors.As(err, &de) && strings.HasPrefix(de.Failure.Text, GrantRevokedPrefix)
}

// Failed is the failure of an API answer with HTTP status. enhanced is the
// RFC 3463 code the provider maps the API's error code to ("" when it has
// no mapping), detail the API's own reason and message. routing's table
// decides the class from them (routing.PhaseAPI), as it does for SMTP
// replies, so the providers keep no keyword lists of their own.
func Failed(api string, status int, enhanced, detail string) *relay.DeliveryError {
	text := fmt.Sprintf("%s: HTTP %d: %s", api, status, detail)
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseAPI, Code: status, Enhanced: enhanced, Text: text},
		Err:     errors.New(text),
	}
}

// Enhanced codes HTTP providers map their API errors to: what routing's
// table reads as each kind of answer.
const (
	// EnhancedQuota: the account or app is over a rate or sending limit
	// (x.4.5, which Gmail's SMTP service uses for its sending limit).
	EnhancedQuota = "4.4.5"
	// EnhancedCredentials: the token or key is refused (RFC 4954).
	EnhancedCredentials = "5.7.8"
	// EnhancedAccount: the account cannot send until someone acts
	// (x.7.13 "user account disabled").
	EnhancedAccount = "5.7.13"
	// EnhancedRecipient: a recipient address is invalid.
	EnhancedRecipient = "5.1.3"
	// EnhancedTooBig: the message is over the API's size limit.
	EnhancedTooBig = "5.3.4"
	// EnhancedInvalid: the request built from this message is invalid
	// (a bad raw message or header).
	EnhancedInvalid = "5.6.0"
)

// GrantRevoked is the failure that makes the relay turn the provider
// "pending": Auth, with Failure.Text starting with GrantRevokedPrefix.
func GrantRevoked(api, detail string, cause error) *relay.DeliveryError {
	if cause == nil {
		cause = oauth.ErrGrantRevoked
	}
	text := fmt.Sprintf("%s %s: %s", GrantRevokedPrefix, api, detail)
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseAuth, Code: 535, Enhanced: "5.7.8", Text: text},
		Class:   relay.ClassPtr(routing.Auth),
		Err:     fmt.Errorf("%s: %w", api, cause),
	}
}

// TokenFailure is the failure of getting an access token.
func TokenFailure(api string, err error) *relay.DeliveryError {
	switch {
	case errors.Is(err, oauth.ErrGrantRevoked):
		return GrantRevoked(api, "invalid_grant: "+retrieveDetail(err)+"; reconnect the account", err)
	case errors.Is(err, oauth.ErrClientRejected), errors.Is(err, oauth.ErrNotConfigured):
		// The operator's OAuth client, not the account: status error.
		text := fmt.Sprintf("%s: OAuth client refused: %s", api, retrieveDetail(err))
		return &relay.DeliveryError{
			Failure: routing.Failure{Phase: routing.PhaseAuth, Code: 535, Enhanced: "5.7.0", Text: text},
			Class:   relay.ClassPtr(routing.Auth),
			Err:     fmt.Errorf("%s: %w", api, err),
		}
	}
	// Token endpoint unreachable or failing: nothing was sent, and the
	// provider is what is broken, as with a failed SMTP connection.
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseAuth, Text: fmt.Sprintf("%s: token refresh failed: %v", api, err)},
		Class:   relay.ClassPtr(routing.Connection),
		Err:     fmt.Errorf("%s: %w", api, err),
	}
}

// retrieveDetail is the token endpoint's error description, else err.
func retrieveDetail(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		if re.ErrorDescription != "" {
			return re.ErrorCode + ": " + re.ErrorDescription
		}
		return re.ErrorCode
	}
	return err.Error()
}

// NetFailure is the failure of a request that got no answer. Before the
// request was fully written nothing can have been sent (Connection);
// after, the API may have sent the message, so it must not be sent again
// (Uncertain, SPEC §5.5).
func NetFailure(ctx context.Context, api string, err error, written bool) *relay.DeliveryError {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	f := routing.Failure{Phase: routing.PhaseConnect, Text: fmt.Sprintf("%s: %v", api, err)}
	class := routing.Connection
	if written {
		f.Phase, f.BodySent = routing.PhaseFinal, true
		class = routing.Uncertain
	}
	return &relay.DeliveryError{Failure: f, Class: relay.ClassPtr(class), Err: fmt.Errorf("%s: %w", api, err)}
}

// Refused is a failure decided locally about the message: permanent.
func Refused(api, text string) *relay.DeliveryError {
	text = api + ": " + text
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseData, Code: 554, Enhanced: "5.6.0", Text: text},
		Class:   relay.ClassPtr(routing.Permanent),
		Err:     errors.New(text),
	}
}

// Snippet is body shortened to one line for a failure text.
func Snippet(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
