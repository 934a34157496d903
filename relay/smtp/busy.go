package smtp

import (
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// Many upstreams cap the connections one account may hold open (Microsoft
// 365 allows 3, Gmail about 10–15, ESPs their own), below
// connections_per_provider. One connection too many is then turned away
// at its opening while the others work: that is not the upstream failing
// (counting it toward the breaker would pull a healthy provider for an
// hour), it is the pool learning the upstream's limit, as Postfix's
// destination concurrency does. So when a new connection is refused and
// others are open, the pool keeps that slot blocked (a "held" slot: one
// connection fewer from now on), and the send waits for one of the open
// connections instead, for at most DialTimeout. A held slot is given back
// after growAfter without another refusal, to find out whether the
// upstream allows more again.

// growAfter is how long the pool runs at a learned limit before it tries
// one connection more.
const growAfter = time.Minute

// refusedNewConnection reports whether a failed dial looks like the
// upstream turning away one more connection: a 4xx reply to the greeting,
// EHLO or AUTH, or the connection refused, reset or closed during the
// opening. A 5xx (credentials), a fault of the account's set-up or a
// timeout is not.
func refusedNewConnection(err error) bool {
	var de *relay.DeliveryError
	if !errors.As(err, &de) || de.Class != nil {
		return false
	}
	f := de.Failure
	if f.Phase != routing.PhaseConnect && f.Phase != routing.PhaseAuth {
		return false
	}
	if f.Code != 0 {
		return f.Code >= 400 && f.Code < 500
	}
	return errors.Is(de.Err, syscall.ECONNREFUSED) || errors.Is(de.Err, syscall.ECONNRESET) ||
		errors.Is(de.Err, io.EOF) || errors.Is(de.Err, io.ErrUnexpectedEOF)
}

// holdSlot is called with the slot of a dial that err ended: when the
// upstream refused one more connection while others are open or opening,
// the slot stays taken (held) and holdSlot reports true; otherwise the
// caller frees it.
func (p *Provider) holdSlot(err error) bool {
	if !refusedNewConnection(err) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.open < 1 && p.dialing < 1 {
		return false
	}
	p.held++
	p.heldAt = time.Now()
	p.startJanitor()
	return true
}

// unhold gives back a slot holdSlot took, when the send that took it
// gives up waiting.
func (p *Provider) unhold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held > 0 {
		p.held--
		<-p.slots
	}
}

// refusedWait is a send waiting for an open connection after the upstream
// refused it a new one. It gives up, freeing the slot it held and failing
// with the refusal, after DialTimeout, or at once when no connection is
// open or opening any more (an upstream that refuses everything is down,
// not full: the failure must reach the breaker without delay, and the
// pool must not stay small once the upstream is back).
type refusedWait struct {
	p      *Provider
	err    error
	holds  int // slots this send held, one per refusal
	until  time.Time
	ticker *time.Ticker
}

// refusedPoll is how often a waiting send checks whether connections are
// still open.
const refusedPoll = 20 * time.Millisecond

func (p *Provider) newRefusedWait(err error) *refusedWait {
	return &refusedWait{p: p, err: err, until: time.Now().Add(p.cfg.DialTimeout), ticker: time.NewTicker(refusedPoll)}
}

// tick is the channel acquire waits on besides its own; nil (never
// ready) while no refusal happened.
func (w *refusedWait) tick() <-chan time.Time {
	if w == nil {
		return nil
	}
	return w.ticker.C
}

// check returns the refusal when the wait is over.
func (w *refusedWait) check() error {
	w.p.mu.Lock()
	hopeless := w.p.open < 1 && w.p.dialing < 1
	w.p.mu.Unlock()
	if !hopeless && time.Now().Before(w.until) {
		return nil
	}
	w.giveBack()
	return w.err
}

// giveBack frees the slots this send held: it is failing with a refusal
// that, in the end, was not about the number of connections. (A send
// that got a connection, or whose context ended, leaves them held: the
// refusals did come while others worked.)
func (w *refusedWait) giveBack() {
	if w == nil {
		return
	}
	for ; w.holds > 0; w.holds-- {
		w.p.unhold()
	}
}

// stop ends the wait: a send that got a connection keeps its slot held,
// the pool's new limit.
func (w *refusedWait) stop() { w.ticker.Stop() }

// growHeld gives one held slot back once the pool ran growAfter at its
// learned limit. The janitor calls it.
func (p *Provider) growHeld(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == 0 || now.Sub(p.heldAt) < growAfter {
		return
	}
	select {
	case <-p.slots:
		p.held--
		p.heldAt = now
	default:
	}
}

// Limit is how many connections the pool opens at most now: MaxConns less
// the slots held after refusals.
func (p *Provider) Limit() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.MaxConns - p.held
}
