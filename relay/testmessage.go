package relay

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/smtpmux/smtpmux/internal/netclass"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// testMessage is what a failed POST /providers/{id}/test tells the team
// (and records as status_reason): the class of the failure, in fixed
// words, never the raw error. Network errors carry the daemon's local
// address and port and the resolved remote address ("read tcp
// 10.0.3.7:41234->…"), and an upstream's reply text can be anything its
// operator — or an attacker — wants the team to read ("go away from
// secret.internal.corp", "bad creds for db-password=…"), so only reply
// codes and a fixed description of their class get through.
func testMessage(err error, providerType string) string {
	var de *DeliveryError
	var se SettingsError
	errors.As(err, &de)
	switch {
	case errors.As(err, &se):
		return err.Error()
	case de != nil && de.Failure.Code != 0:
		return upstreamReply(de, providerType)
	}
	if m := netclass.Describe(err); m != "" {
		return m
	}
	if de != nil {
		switch de.Classified() {
		case routing.Auth:
			if providerType == store.TypeSMTP && de.Err != nil {
				// relay/smtp's setup faults (no STARTTLS, no usable AUTH)
				// quote the upstream's EHLO; name the fault by its phase.
				if de.Failure.Phase == routing.PhaseAuth {
					return "configuration problem: the upstream offers no AUTH mechanism this server can use (PLAIN or LOGIN)"
				}
				return "configuration problem: the upstream does not offer STARTTLS (check smtp_protocol)"
			}
			return "authentication or configuration problem (check the credentials and settings)"
		case routing.Quota:
			return "the upstream reports the account is over its sending quota"
		}
	}
	return "connection failed"
}

// upstreamReply renders an answer the upstream gave: a fixed description
// of its class with the reply code and enhanced code for SMTP, the HTTP
// status and the AWS error code for SES (an HTTP API). Never its text.
func upstreamReply(de *DeliveryError, providerType string) string {
	f := de.Failure
	if providerType != store.TypeSMTP {
		code, _, _ := strings.Cut(f.Text, ":")
		if !awsCodeRE.MatchString(code) {
			code = ""
		}
		msg := fmt.Sprintf("the upstream answered HTTP %d", f.Code)
		if code != "" {
			msg += " (" + code + ")"
		}
		if de.Classified() == routing.Auth {
			msg += ": the credentials were refused"
		}
		return msg
	}
	codes := fmt.Sprint(f.Code)
	if enhancedRE.MatchString(f.Enhanced) {
		codes += " " + f.Enhanced
	}
	return replyClass(de) + " (" + codes + ")"
}

// replyClass describes an SMTP reply by what it means for the account,
// in fixed words.
func replyClass(de *DeliveryError) string {
	f := de.Failure
	temp := f.Code/100 == 4
	switch de.Classified() {
	case routing.Auth:
		if f.Phase == routing.PhaseAuth {
			return "the upstream refused authentication"
		}
		return "the upstream refused the account or its settings"
	case routing.Quota:
		return "the upstream reports the account is over its sending quota"
	}
	switch {
	case f.Phase == routing.PhaseConnect && temp:
		return "the upstream is not taking connections now"
	case f.Phase == routing.PhaseConnect:
		return "the upstream refused the connection"
	case f.Phase == routing.PhaseAuth && temp:
		return "the upstream could not authenticate now"
	case f.Phase == routing.PhaseAuth:
		return "the upstream refused authentication"
	case temp:
		return "the upstream answered with a temporary failure"
	}
	return "the upstream refused"
}

var (
	awsCodeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{0,63}$`)
	// enhancedRE is an RFC 3463 enhanced status code; anything else in
	// that place is not repeated.
	enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)
)
