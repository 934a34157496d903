// Package connslots counts a server's open connections, in all and per
// client, for the SMTP listeners (relay) and the HTTP listeners (admin)
// alike, so both caps count clients the same way.
package connslots

import (
	"net"
	"sync"
)

// Result is Take's answer.
type Result int

const (
	// OK: the connection holds a slot until Release.
	OK Result = iota
	// ClientFull: the client already holds its cap of connections.
	ClientFull
	// Full: the server holds its cap of connections.
	Full
)

// Slots counts open connections, in all and per client key. A zero cap is
// no cap. Safe for concurrent use; one Slots is shared by every listener of
// a server.
type Slots struct {
	max, perClient int

	mu       sync.Mutex
	total    int
	byClient map[string]int
}

// New returns Slots with the given caps (0: none).
func New(max, perClient int) *Slots {
	return &Slots{max: max, perClient: perClient, byClient: map[string]int{}}
}

// Take claims a slot for a connection from client key. The per-client cap
// is checked first, so a client over its own cap does not use a server
// slot even for the instant of its refusal.
func (s *Slots) Take(key string) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perClient > 0 && s.byClient[key] >= s.perClient {
		return ClientFull
	}
	if s.max > 0 && s.total >= s.max {
		return Full
	}
	s.total++
	s.byClient[key]++
	return OK
}

// Release gives back a slot Take granted to key.
func (s *Slots) Release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byClient[key]--; s.byClient[key] <= 0 {
		delete(s.byClient, key) // the map holds only clients with open connections
	}
}

// Open reports the connections open in all and from key.
func (s *Slots) Open(key string) (total, client int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.byClient[key]
}

// ClientKey is what per-client limits count by, from a remote address
// ("host:port" or a bare IP): the IP, or for IPv6 its /64, since one host
// or customer routinely holds a whole /64 and would otherwise have 2^64
// addresses' worth of slots and attempts. An address that is not an IP (a
// unix socket) is its own key.
func ClientKey(addr string) string {
	ip := RemoteIP(addr)
	p := net.ParseIP(ip)
	if p == nil || p.To4() != nil {
		return ip
	}
	return p.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// RemoteIP is the host part of a "host:port" address, or the address
// itself when it has no port.
func RemoteIP(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
