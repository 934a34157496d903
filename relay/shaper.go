package relay

import "github.com/smtpmux/smtpmux/store"

// Shaper rewrites a message for the provider an attempt picked (SPEC §6):
// sender defaults (or the authorised address of a connected account),
// tracking links, then the DKIM signature. It runs per attempt because
// the provider — whose defaults and tracking domain apply — is only known
// at pick time; for one message and provider it must produce the same
// bytes each time (a DKIM t= tag aside). cmd wires the implementation so
// relay does not import relay/shape.
type Shaper interface {
	Shape(m *store.Message, p *store.Provider, body []byte) (shaped []byte, sentFrom string, err error)
}
