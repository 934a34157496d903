package sendapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/senderr"
	"github.com/smtpmux/smtpmux/store"
)

// Sender is the relay as the HTTP Sending API needs it: the same
// credential check, rate limit and durable enqueue as SMTP. cmd implements
// it over relay.Server (Authenticate, Submit, Limiter().Allow). Its errors
// are internal/senderr's, which relay returns as they are; anything else
// is an internal error.
type Sender interface {
	// Authenticate resolves a sending key or mailbox password presented
	// from client address remoteIP. An unknown, revoked or suspended
	// credential, or a root key, is senderr.ErrBadCredential; an address
	// past its failed-attempt limit (shared with SMTP AUTH) is a
	// *senderr.AuthLimitedError, and the secret was not checked.
	Authenticate(remoteIP, secret string) (*Credential, error)
	// Submit accepts one message for the credential cred names (by Kind
	// and ID): envelope sender, envelope recipients and the
	// CRLF-terminated MIME bytes. It returns the eml_ ID once the message
	// is durable.
	Submit(cred *Credential, from string, rcpts []string, body []byte) (string, error)
	// Allow counts one request of the credential against the per-key
	// limit shared with SMTP and reports whether it is within it; if not,
	// how long until it may retry.
	Allow(credentialID string) (bool, time.Duration)
}

// Credential is an authenticated sender as the Sending API sees it.
type Credential struct {
	// Kind and ID name the sending key or mailbox password
	// (store.CredKind…); Submit re-reads the credential by them.
	Kind   string
	ID     string
	TeamID string
	// RequiredFrom is the only sender a mailbox password may use; empty
	// for sending keys.
	RequiredFrom string
}

// Error codes of the Sending API beyond httpapi's.
const (
	codeNoActiveProviders = "no_active_providers"
	codeDailyLimit        = "daily_limit_exceeded"
	fcSenderNotAllowed    = "sender_not_allowed"
	fcSuppressed          = "recipient_suppressed"
)

// sendResult is the answer to one accepted message.
type sendResult struct {
	MessageID string `json:"message_id"`
	Status    string `json:"status"`
}

// sendAuth authenticates a Sending API request and counts it against the
// credential's rate limit (a batch is one request, SPEC §4). Root keys are
// recognised and refused with 403, so a caller who pasted the wrong key
// learns why rather than getting a bare 401.
func (s *Handler) sendAuth(c *call) error {
	if s.opts.Sender == nil {
		return httpapi.ErrUnavailable("the HTTP Sending API is not enabled on this server")
	}
	secret, ok := httpapi.Bearer(c.r)
	if !ok {
		return httpapi.ErrAuthRequired(`missing Authorization header: send "Authorization: Bearer <sending key or mailbox password>"`)
	}
	if strings.HasPrefix(secret, store.SecretPrefixRoot) {
		// The relay knows no root keys: checked here, as one attempt
		// against the same per-address limit (httpapi.Attempt).
		return httpapi.Attempt(s.opts.AuthAttempts, c.r, func() error {
			k, err := s.opts.Store.KeyBySecret(secret)
			if err == nil && k.Active() {
				return httpapi.ErrForbidden("root keys manage the account and cannot send mail; use a sending key or a mailbox password")
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return httpapi.AuthUnavailable(s.log, c.r, err)
			}
			return httpapi.ErrAuthRequired("invalid API key")
		})
	}
	cred, err := s.opts.Sender.Authenticate(httpapi.ClientIP(c.r), secret)
	var limited *senderr.AuthLimitedError
	if errors.As(err, &limited) {
		return httpapi.ErrAuthLimited(limited.RetryAfter)
	}
	if errors.Is(err, senderr.ErrBadCredential) {
		return httpapi.ErrAuthRequired("invalid, revoked or suspended sending key or mailbox password")
	}
	if err != nil {
		return httpapi.AuthUnavailable(s.log, c.r, err)
	}
	httpapi.SetKeyID(c.r, cred.ID)
	if ok, wait := s.opts.Sender.Allow(cred.ID); !ok {
		return &httpapi.Error{Status: http.StatusTooManyRequests, Code: httpapi.CodeRateLimited, Retryable: true,
			Message: "sending rate limit exceeded for this credential", RetryAfter: max(wait, time.Second)}
	}
	c.send = cred
	return nil
}

// sendEmail is POST /emails/send.
func (s *Handler) sendEmail(c *call) error {
	o, err := httpapi.ReadObject(c.r, maxSendBodyBytes)
	if err != nil {
		return err
	}
	in, err := decodeSend(o)
	if err != nil {
		return err
	}
	id, err := s.submitOne(c, in)
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, sendResult{MessageID: id, Status: "queued"})
	return nil
}

// submitOne builds the MIME message and hands it to the relay, turning
// the Sender's errors into API answers.
func (s *Handler) submitOne(c *call, in *Message) (string, error) {
	cred := c.send
	if cred.RequiredFrom != "" {
		v := &httpapi.Validator{}
		// ASCII only: Unicode folding takes "ſk@x" for "sk@x".
		if !sameMailbox(in.From.Email, cred.RequiredFrom) {
			v.Add("from.email", fcSenderNotAllowed, "a mailbox password sends only as its mailbox address "+cred.RequiredFrom)
		}
		if in.ReturnPath != "" && !sameMailbox(in.ReturnPath, cred.RequiredFrom) {
			v.Add("return_path", fcSenderNotAllowed, "a mailbox password sends only with its mailbox address as return path")
		}
		if err := v.Err(); err != nil {
			return "", err
		}
	}
	body, err := BuildMIME(in, s.headerMessageID(in.From.Email), s.now())
	if err != nil {
		return "", err
	}
	// The attachments are in body now; dropping them lets the collector
	// take the request they point into while the relay stores body.
	in.Attachments = nil
	envFrom := in.From.Email
	if in.ReturnPath != "" {
		envFrom = in.ReturnPath
	}
	id, err := s.opts.Sender.Submit(cred, envFrom, in.Recipients(), body)
	switch {
	case err == nil:
		s.log.Info("http send accepted", "request_id", c.reqID, "msg_id", id, "team", cred.TeamID,
			"rcpts", len(in.Recipients()), "size", len(body))
		return id, nil
	case errors.Is(err, senderr.ErrBadCredential):
		return "", httpapi.ErrAuthRequired("the sending key or mailbox password was revoked or suspended")
	case errors.Is(err, senderr.ErrNoActiveProviders):
		return "", &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeNoActiveProviders, Retryable: true,
			Message: "no provider in this credential's send scope is active; nothing was queued", RetryAfter: time.Minute}
	case errors.Is(err, senderr.ErrSenderNotMailbox):
		return "", httpapi.ErrValidation("from.email", fcSenderNotAllowed, "this credential may not send as "+in.From.Email)
	case errors.Is(err, senderr.ErrBadAddress), errors.Is(err, senderr.ErrEmptyMessage):
		return "", httpapi.ErrValidation("to.email", httpapi.FieldInvalidEmail, "the relay refused an address of this message")
	case errors.Is(err, senderr.ErrSuppressed):
		// The error names the address, which the caller sent: no one
		// else's data.
		return "", httpapi.ErrValidation("to", fcSuppressed, err.Error()+" (DELETE /api/v1/suppressions/{email} to send to it again); nothing was queued")
	case errors.Is(err, senderr.ErrDailyLimit):
		now := s.now()
		return "", &httpapi.Error{Status: http.StatusTooManyRequests, Code: codeDailyLimit, Retryable: true,
			Message:    "daily sending limit reached; it resets at 00:00 UTC",
			RetryAfter: dayStart(now).Add(24 * time.Hour).Sub(now)}
	case errors.Is(err, senderr.ErrHourlyLimit):
		// Not retryable as is: the same message never fits an hour.
		return "", httpapi.ErrValidation("to", httpapi.FieldOutOfRange, "this message has more recipients than the managed account's hourly sending limit allows; send them in smaller messages")
	case errors.Is(err, senderr.ErrAuthUnavailable), errors.Is(err, senderr.ErrLimitsUnavailable):
		return "", httpapi.AuthUnavailable(s.log, c.r, err)
	}
	return "", err
}

// headerMessageID makes the Message-ID header: random, at the configured
// hostname or else the sender's domain (a Message-ID's right side only has
// to be a domain the sender may speak for, and that one is).
func (s *Handler) headerMessageID(from string) string {
	host := s.opts.Hostname
	if host == "" {
		if at := strings.LastIndexByte(from, '@'); at >= 0 {
			host = from[at+1:]
		}
	}
	return store.NewID("") + "@" + host
}

// sameMailbox compares a sender address with a mailbox's under ASCII case
// folding. strings.EqualFold alone folds Unicode lookalikes (U+017F LONG
// S, U+212A KELVIN SIGN) into ASCII letters, so a non-ASCII address never
// matches; between ASCII strings it folds only ASCII letters.
func sameMailbox(addr, mailbox string) bool {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return false
		}
	}
	return strings.EqualFold(addr, mailbox)
}
