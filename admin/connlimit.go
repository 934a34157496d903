package admin

import (
	"net"

	"github.com/smtpmux/smtpmux/internal/connslots"
)

// LimitListener caps the connections a listener holds open at once: total
// in all, and perIP from any one client (an IP; an IPv6 /64). A connection past either cap
// is accepted and closed at once, without a word (the peer reads EOF):
// refusing costs nothing, whereas leaving it in the kernel's backlog, as
// a blocking cap would, makes every other client wait behind it. Without
// the caps a few hundred slow clients starve the API and, through file
// descriptors, the SMTP listeners of the same process.
func LimitListener(ln net.Listener, total, perIP int) net.Listener {
	return connslots.Listener(ln, connslots.New(total, perIP), nil)
}
