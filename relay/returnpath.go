package relay

import (
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// defaultReturnPathTTL is how long a VERP token is good for when the
// configuration does not say.
const defaultReturnPathTTL = 30 * 24 * time.Hour

// envelopeFrom is the MAIL FROM of an attempt of m through prov: the
// message's own sender, or, for an SMTP provider with a return-path
// domain, a VERP address b+<token>@<domain> whose token names the
// message and its one recipient left, so that a bounce or feedback report
// sent back can be matched to them (SPEC §13).
//
// A transaction to several recipients keeps the message's own sender:
// every recipient sees the envelope sender, so a token good for "any of
// the message's recipients" would let one recipient forge bounces and
// complaints about the others — suppressing them and, through the rates,
// holding the team's managed account. Asynchronous reports are therefore
// tracked for single-recipient transactions only.
//
// A null sender stays null: a message sent with MAIL FROM:<> is itself a
// notification, and must not draw reports back (RFC 5321 §4.5.5), nor
// may smtpmux make its bounce come back to the listener as one.
func (s *Scheduler) envelopeFrom(prov *store.Provider, m *store.Message) string {
	if s.cfg.VERP == nil || m.From == "" || prov.Type != store.TypeSMTP {
		return m.From
	}
	domain := prov.ReturnPathDomain
	if domain == "" {
		domain = s.cfg.BounceDomain
	}
	if domain == "" {
		return m.From
	}
	ttl := s.cfg.ReturnPathTTL
	if ttl <= 0 {
		ttl = defaultReturnPathTTL
	}
	rcpt, n := -1, 0
	for i, r := range m.Recipients {
		if r.Status == state.MessagePending {
			rcpt, n = i, n+1
		}
	}
	if n != 1 {
		return m.From
	}
	return s.cfg.VERP.Address(m.ID, rcpt, s.now().Add(ttl), strings.ToLower(domain))
}
