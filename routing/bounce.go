package routing

// BounceKind is what a recipient's final failure means for its address:
// whether the address should be trusted again (SPEC §13).
type BounceKind string

// Kinds of bounce. BounceNone is a failure that says nothing about the
// recipient's address (a policy block, a message too big, the provider's
// trouble): it is never a reason to suppress the address.
const (
	BounceNone BounceKind = ""
	// BounceHard: the address or mailbox does not exist or can never
	// take mail (5xx with x.1.x or x.2.x, or a 5xx at RCPT without a
	// code that names another scope).
	BounceHard BounceKind = "hard"
	// BounceSoft: a temporary failure of the recipient that ended the
	// message (4xx recipient scope until retries ran out); it suppresses
	// only after several in a row.
	BounceSoft BounceKind = "soft"
)

// BounceOf classifies the final failure f of one recipient through the
// one table (Decide): only a recipient-scoped verdict is a bounce, hard
// when permanent, soft when temporary. A 5xx of message or policy scope
// (552 5.3.4, 550 5.7.1) rejects the message but is not the address's
// fault, so it is BounceNone.
func BounceOf(f Failure) BounceKind {
	if f.Code >= 500 && f.Code <= 504 && parseEnhanced(f.Enhanced).class == 0 {
		// A protocol error (syntax, sequence, parameter) without a code
		// naming the address says nothing about the mailbox: an upstream
		// that lost the MAIL answers 503 to every RCPT.
		return BounceNone
	}
	v := Decide(f)
	if v.Scope != ScopeRecipient {
		return BounceNone
	}
	if v.Permanent {
		return BounceHard
	}
	return BounceSoft
}

// BounceOfStatus classifies a DSN's per-recipient status code (RFC 3464
// Status: "5.1.1") the same way as a reply to RCPT, which is what a remote
// MTA's report stands for: the recipient's own server refused it.
func BounceOfStatus(status string) BounceKind {
	e := parseEnhanced(status)
	switch {
	case e.class == 0:
		return BounceNone
	case e.class == 2:
		return BounceNone
	}
	code := 550
	if e.class == 4 {
		code = 450
	}
	return BounceOf(Failure{Phase: PhaseRcpt, Code: code, Enhanced: status})
}
