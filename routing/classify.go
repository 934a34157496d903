package routing

import "strings"

// Class is what a failed delivery attempt means for the message and for the
// provider that produced it (SPEC §5.5).
type Class int

const (
	// Transient is any temporary failure: retry later, possibly elsewhere.
	// Unknown failures are transient so that nothing is dropped on a guess.
	Transient Class = iota
	// Connection is a failure before the message was handed over (dial,
	// TLS, timeout before DATA); it counts toward the provider's breaker.
	Connection
	// Auth is a credential or configuration fault of the provider; the
	// provider goes to status error until an operator fixes it.
	Auth
	// Quota means the upstream account's rate or daily quota is exhausted.
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
)

// Failure is the raw fact of one failed upstream step, as a provider saw it.
type Failure struct {
	Phase Phase
	// Code is the SMTP reply code (or an HTTP status mapped by the provider);
	// 0 when no reply was received (network error).
	Code     int
	Enhanced string // "5.7.8" or ""
	Text     string
	// BodySent is true when the whole body was written before the failure.
	BodySent bool
}

// quotaHints are reply texts by which upstreams say that the account, not
// the message, is over its rate or daily quota.
var quotaHints = []string{
	"quota", "rate limit", "ratelimit", "rate exceeded", "too many messages",
	"sending limit", "daily limit", "limit exceeded", "throttl",
}

// Classify decides the class of a failure. It is the single table every
// provider's outcome goes through.
func Classify(f Failure) Class {
	if f.Code == 0 {
		if f.BodySent || f.Phase == PhaseFinal {
			return Uncertain
		}
		if f.Phase == PhaseConnect || f.Phase == PhaseAuth {
			return Connection
		}
		// A dropped connection during MAIL/RCPT/DATA before the body went
		// out: nothing was accepted, retry.
		return Connection
	}
	text := strings.ToLower(f.Text)
	switch {
	case f.Code == 530 || f.Code == 534 || f.Code == 535:
		return Auth
	case f.Phase == PhaseAuth && f.Code >= 500:
		return Auth
	case f.Phase == PhaseAuth:
		// 454 and friends: the upstream's auth backend is down, not our
		// credentials; treat like a connection problem.
		return Connection
	}
	if f.Code >= 400 && (hasQuotaHint(text) || f.Enhanced == "5.4.5" || f.Enhanced == "4.4.5") {
		return Quota
	}
	switch {
	case f.Code == 421:
		// 421 is the server closing the channel: the service, not the
		// message, is the problem.
		return Connection
	case f.Code >= 400 && f.Code < 500:
		if f.Phase == PhaseConnect {
			return Connection
		}
		return Transient
	case f.Code >= 500 && f.Code < 600:
		if f.Phase == PhaseConnect {
			return Connection
		}
		return Permanent
	}
	return Transient
}

func hasQuotaHint(text string) bool {
	for _, h := range quotaHints {
		if strings.Contains(text, h) {
			return true
		}
	}
	return false
}
