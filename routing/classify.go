package routing

import (
	"strconv"
	"strings"
)

// Class is what a failed delivery attempt means for the message and for the
// provider that produced it (SPEC §5.5). It is derived from a Verdict's
// scope and permanence; the relay acts on it.
type Class int

const (
	// Transient is any temporary failure: retry later, possibly elsewhere.
	// Unknown failures are transient so that nothing is dropped on a guess.
	Transient Class = iota
	// Connection is a failure of the provider's service (dial, TLS, a
	// refused greeting, 421) before the message was handed over; it counts
	// toward the provider's breaker.
	Connection
	// Auth is a credential or configuration fault of the provider; the
	// provider goes to status error until an operator fixes it.
	Auth
	// Quota means the upstream account's rate or daily quota is exhausted;
	// it counts toward the breaker.
	Quota
	// Permanent is a 5xx rejection of the recipient or message: no retry,
	// not the provider's fault.
	Permanent
	// Uncertain means the body was sent but the final reply never arrived:
	// the provider may have accepted it, so it is never resent.
	Uncertain
)

var classNames = [...]string{"transient", "connection", "auth", "quota", "permanent", "uncertain"}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "unknown"
	}
	return classNames[c]
}

// FeedsBreaker reports whether a failure of class c counts toward the
// provider's breaker: only the provider's service or account failing does.
// Every recipient- or message-scoped verdict has another class.
func (c Class) FeedsBreaker() bool { return c == Connection || c == Quota }

// FailureScope is whose problem a failure is.
type FailureScope string

// Scopes of a failure. Only the provider scopes and network failures can
// reach the breaker (Verdict.Class says whether one does).
const (
	// ScopeRecipient: one recipient's address or mailbox (x.1.x, x.2.x,
	// any refusal at RCPT without an enhanced code).
	ScopeRecipient FailureScope = "recipient"
	// ScopeMessage: this message — its size (x.3.4), content (x.6.x),
	// sender address, or the commands as written (x.5.x).
	ScopeMessage FailureScope = "message"
	// ScopePolicy: the receiving side's policy about this transaction
	// (x.7.x: spam, relay denied, sender not allowed).
	ScopePolicy FailureScope = "policy"
	// ScopeProviderQuota: the upstream account's rate or daily quota.
	ScopeProviderQuota FailureScope = "provider_quota"
	// ScopeProviderAuth: the provider's credentials or account set-up.
	ScopeProviderAuth FailureScope = "provider_auth"
	// ScopeProvider: the provider's service is unavailable or failing
	// (421, a refused greeting, x.3.x mail system trouble).
	ScopeProvider FailureScope = "provider"
	// ScopeNetwork: no reply (dial, reset, timeout), or the provider's
	// trouble routing onward (x.4.x).
	ScopeNetwork FailureScope = "network"
	// ScopeUnknown: a reply that names no scope; handled as temporary
	// unless its code is a 5xx.
	ScopeUnknown FailureScope = "unknown"
)

// Verdict is the classification of one failure: whose problem it is,
// whether retrying can help, and the class the relay acts on.
type Verdict struct {
	Class     Class
	Scope     FailureScope
	Permanent bool
}

// Phase is the step of an upstream conversation a failure happened in.
type Phase string

// Phases of an upstream delivery, in order.
const (
	PhaseConnect Phase = "connect" // dial, greeting, EHLO, TLS
	PhaseAuth    Phase = "auth"
	PhaseMail    Phase = "mail"
	PhaseRcpt    Phase = "rcpt"
	PhaseData    Phase = "data"  // DATA command and body transfer
	PhaseFinal   Phase = "final" // the reply after the final dot
	// PhaseAPI is one call of an HTTP provider's send API, which carries
	// envelope and body at once. Code is then the HTTP status, and the
	// provider maps its structured error code to Enhanced (see Decide).
	PhaseAPI Phase = "api"
)

// Failure is the raw fact of one failed upstream step, as a provider saw it.
type Failure struct {
	Phase Phase
	// Code is the SMTP reply code, or the HTTP status at PhaseAPI; 0 when
	// no reply was received (network error).
	Code     int
	Enhanced string // "5.7.8" or ""
	Text     string
	// BodySent is true when the whole body was written before the failure.
	BodySent bool
}

// Classify decides the class of a failure: Decide(f).Class.
func Classify(f Failure) Class { return Decide(f).Class }

// Decide is the one classification table every provider's outcome goes
// through, keyed on the RFC 3463 enhanced status code and the phase.
//
// The enhanced code's subject says whose problem a reply is, so it comes
// first: x.1.x (addressing) and x.2.x (mailbox) are a recipient's, x.3.4,
// x.5.x and x.6.x this message's, x.7.x policy. Reply text is read only
// to tell a quota or rate limit from other trouble where the code leaves
// the scope open — no enhanced code, x.0.x, or the provider-side subjects
// x.3.x and x.7.x, or a 421 or refused greeting, which are the provider's
// anyway — and never at RCPT: a reply to RCPT concerns that recipient
// unless its code says otherwise ("452 4.2.2 mailbox over quota" is the
// recipient's mailbox, not the account's quota). The one exception is a
// vendor's diagnostic token that names the submitting account while its
// code names a mailbox (vendorQuotaTokens: Exchange's
// STOREDRV.Submission quota exceptions), honoured outside RCPT only.
func Decide(f Failure) Verdict {
	if f.Code == 0 {
		if f.BodySent || f.Phase == PhaseFinal {
			return Verdict{Class: Uncertain, Scope: ScopeNetwork, Permanent: true}
		}
		// Dial, TLS, reset or timeout before the body went out: nothing
		// was accepted, and the provider could not be talked to.
		return Verdict{Class: Connection, Scope: ScopeNetwork}
	}
	if f.Phase == PhaseAPI {
		return decideAPI(f)
	}
	e := parseEnhanced(f.Enhanced)
	temp := f.Code < 500
	switch {
	case f.Code == 530 || f.Code == 534 || f.Code == 535:
		// RFC 4954: authentication required, mechanism too weak,
		// credentials invalid — whatever command it answers.
		return provAuth()
	case f.Phase == PhaseAuth && !temp:
		return provAuth()
	case f.Phase == PhaseAuth:
		// 454 and friends: the upstream's auth backend is down, not our
		// credentials; treat like a connection problem.
		return Verdict{Class: Connection, Scope: ScopeProvider}
	case f.Phase != PhaseRcpt && e.isAuth():
		return provAuth()
	case f.Phase != PhaseRcpt && vendorQuota(f):
		return provQuota(temp)
	case f.Phase == PhaseConnect:
		// Turned away before any transaction: the service, not a message.
		if hintsQuota(f.Text) && !hintsConnLimit(f.Text) {
			return provQuota(temp)
		}
		return Verdict{Class: Connection, Scope: ScopeProvider, Permanent: !temp}
	}
	if v, ok := bySubject(f, e, temp); ok {
		return v
	}
	if f.Code == 421 {
		// The server is closing the channel: its service, not the
		// message, is the problem (RFC 5321 §4.2.2).
		if f.Phase != PhaseRcpt && hintsQuota(f.Text) && !hintsConnLimit(f.Text) {
			return provQuota(true)
		}
		return Verdict{Class: Connection, Scope: ScopeProvider}
	}
	if e.subject == 3 || e.subject == 7 {
		return providerOrPolicy(f, e, temp)
	}
	// No enhanced code, or x.0.x, which names no scope.
	if f.Phase == PhaseRcpt {
		return byPermanence(ScopeRecipient, temp)
	}
	return byText(f, temp)
}

// bySubject decides the subjects that name their scope on their own.
func bySubject(f Failure, e enhanced, temp bool) (Verdict, bool) {
	switch e.subject {
	case 1:
		if e.detail == 90 && f.Code != 421 {
			// Exchange Online's "5.1.90 … reached your daily limit for
			// message recipients": the sending account's limit.
			return provQuota(temp), true
		}
		if e.detail == 7 || e.detail == 8 || f.Phase == PhaseMail {
			return byPermanence(ScopeMessage, temp), true // the sender's address
		}
		return byPermanence(ScopeRecipient, temp), true
	case 2:
		if e.detail == 3 {
			return byPermanence(ScopeMessage, temp), true // too long for the mailbox
		}
		return byPermanence(ScopeRecipient, temp), true
	case 3:
		if e.detail == 4 {
			return byPermanence(ScopeMessage, temp), true
		}
	case 4:
		if e.detail == 5 && f.Code != 421 {
			// Congestion; Gmail's "550 5.4.5 Daily user sending quota
			// exceeded" uses it for the account's sending limit.
			return provQuota(temp), true
		}
		if f.Code == 421 {
			return Verdict{}, false
		}
		if f.Phase == PhaseRcpt {
			// The provider cannot route to this recipient (Exchange
			// Online's "550 5.4.1 Recipient address rejected").
			return byPermanence(ScopeRecipient, temp), true
		}
		return byPermanence(ScopeNetwork, temp), true
	case 5:
		if e.detail == 3 && f.Phase == PhaseRcpt {
			return byPermanence(ScopeRecipient, temp), true // too many recipients: retry the rest later
		}
		return byPermanence(ScopeMessage, temp), true
	case 6:
		return byPermanence(ScopeMessage, temp), true
	}
	return Verdict{}, false
}

// providerOrPolicy decides x.3.x (the provider's mail system) and x.7.x
// (policy), where wording tells an account limit from other trouble.
func providerOrPolicy(f Failure, e enhanced, temp bool) Verdict {
	if f.Phase != PhaseRcpt {
		switch {
		case hintsConnLimit(f.Text):
			return Verdict{Class: Connection, Scope: ScopeProvider}
		case hintsQuota(f.Text):
			return provQuota(temp)
		}
	}
	if e.subject == 7 {
		return byPermanence(ScopePolicy, temp)
	}
	return byPermanence(ScopeProvider, temp)
}

// byText reads a reply outside RCPT that has no scope in its code.
func byText(f Failure, temp bool) Verdict {
	switch {
	case hintsMessage(f.Text) || f.Code == 552:
		// RFC 5321's 552 is "exceeded storage allocation": a mailbox
		// or this message, never the account.
		return byPermanence(ScopeMessage, temp)
	case hintsRecipient(f.Text):
		return byPermanence(ScopeRecipient, temp)
	case hintsConnLimit(f.Text):
		return Verdict{Class: Connection, Scope: ScopeProvider}
	case hintsQuota(f.Text):
		return provQuota(temp)
	}
	return byPermanence(ScopeUnknown, temp)
}

// decideAPI reads an HTTP provider's answer: the enhanced code the
// provider mapped its documented error code to, else the HTTP status,
// else (for an unmapped 4xx) the wording. An unmapped 400 is not taken
// for a bad message: unknown is temporary.
func decideAPI(f Failure) Verdict {
	e := parseEnhanced(f.Enhanced)
	temp := e.class != 5
	switch {
	case e.isAuth():
		return provAuth()
	case vendorQuota(f):
		return provQuota(temp)
	case e.subject != 0:
		if v, ok := bySubject(f, e, temp); ok {
			return v
		}
		return providerOrPolicy(f, e, temp)
	}
	switch st := f.Code; {
	case st == 429:
		return provQuota(true)
	case st == 401 || st == 403 || st == 404:
		// The account or its set-up: every message would meet the same.
		return provAuth()
	case st == 413:
		return byPermanence(ScopeMessage, false)
	case st == 408 || st == 409 || st == 425 || st >= 500 || st < 400:
		return byPermanence(ScopeProvider, true)
	}
	// Another 4xx the provider did not map: unknown, so temporary, unless
	// the API says in words that the account is over a limit.
	switch {
	case hintsConnLimit(f.Text):
		return Verdict{Class: Connection, Scope: ScopeProvider}
	case hintsQuota(f.Text):
		return provQuota(true)
	}
	return byPermanence(ScopeUnknown, true)
}

func provAuth() Verdict { return Verdict{Class: Auth, Scope: ScopeProviderAuth, Permanent: true} }

// provQuota is an account limit. It is never Permanent for the message:
// the message waits for the window to pass or goes elsewhere.
func provQuota(temp bool) Verdict {
	return Verdict{Class: Quota, Scope: ScopeProviderQuota, Permanent: !temp}
}

// byPermanence is a verdict that does not touch the provider's health.
func byPermanence(s FailureScope, temp bool) Verdict {
	if temp {
		return Verdict{Class: Transient, Scope: s}
	}
	return Verdict{Class: Permanent, Scope: s, Permanent: true}
}

// enhanced is a parsed RFC 3463 code class.subject.detail; subject 0
// when absent or malformed.
type enhanced struct{ class, subject, detail int }

func parseEnhanced(s string) enhanced {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 {
		return enhanced{}
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 999 {
			return enhanced{}
		}
		n[i] = v
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return enhanced{}
	}
	return enhanced{class: n[0], subject: n[1], detail: n[2]}
}

// isAuth: x.7.8 credentials invalid, x.7.9 mechanism too weak (RFC 4954),
// x.7.13 user account disabled (RFC 3463 registry) — the account, after
// (or instead of) a successful authentication.
func (e enhanced) isAuth() bool {
	return e.subject == 7 && (e.detail == 8 || e.detail == 9 || e.detail == 13)
}
