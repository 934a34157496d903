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

// smtpEquivalent gives each class the SMTP reply code and enhanced code
// that routing.Classify maps back to the same class, so attempt records
// and webhooks read like those of SMTP providers; the HTTP status stays
// in the text.
func smtpEquivalent(c routing.Class, status int) (int, string) {
	switch c {
	case routing.Auth:
		return 535, "5.7.8"
	case routing.Quota:
		return 451, "4.4.5"
	case routing.Permanent:
		if status == 413 {
			return 552, "5.3.4"
		}
		return 554, "5.0.0"
	case routing.Transient:
		return 451, "4.3.0"
	}
	return 0, ""
}

// Failed is the failure of an API answer with HTTP status: class as the
// provider decided it, detail the API's own reason and message.
func Failed(api string, class routing.Class, status int, detail string) *relay.DeliveryError {
	text := fmt.Sprintf("%s: HTTP %d: %s", api, status, detail)
	code, enh := smtpEquivalent(class, status)
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseFinal, Code: code, Enhanced: enh, Text: text},
		Class:   relay.ClassPtr(class),
		Err:     errors.New(text),
	}
}

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
