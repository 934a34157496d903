package netpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrRefused is the dialer's refusal of an internal address. It wraps
// nothing and names no address: its text may reach a tenant.
var ErrRefused = errors.New("the upstream host resolves to an internal address, which this server does not connect to")

// Control is a net.Dialer Control function that refuses internal
// addresses. It runs after DNS resolution, for each address the dialer
// tries, just before connect(2): a name that resolves inward, now or
// after a later DNS change (rebinding), is caught here.
func Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || Internal(ap.Addr()) {
		return ErrRefused
	}
	return nil
}

// Dialer returns a dialer with the given connect timeout that, unless
// allowPrivate, refuses internal addresses (Control).
func Dialer(timeout time.Duration, allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = Control
	}
	return d
}

// DialFunc is the DialContext of Dialer, for configs that take a function.
func DialFunc(timeout time.Duration, allowPrivate bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return Dialer(timeout, allowPrivate).DialContext
}
