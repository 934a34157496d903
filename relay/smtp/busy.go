package smtp

import (
	"context"
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
// destination concurrency does. So when a new connection is turned away
// while others are open or opening, the pool keeps that slot blocked (a
// "held" slot: one connection fewer from now on), and the send no longer
// dials: it waits for one of the open connections like any other send
// waiting for the pool, within its own deadline. A held slot is given back
// after growAfter without another refusal, to find out whether the
// upstream allows more again.
//
// When nothing is open or opening any more, the refusal was not about the
// number of connections (or the upstream still counted one just closed):
// the send gives its held slots back and dials once more, and if that is
// turned away too, fails with the refusal, so that an upstream that
// refuses everything reaches the breaker without delay and the pool is
// whole when it returns.

// growAfter is how long the pool runs at a learned limit before it tries
// one connection more.
const growAfter = time.Minute

// refusedPoll is how often a send waiting after a refusal checks whether
// connections are still open or opening.
const refusedPoll = 20 * time.Millisecond

// refusedNewConnection reports whether a failed dial looks like the
// upstream turning away one more connection: a reply classed as a
// connection problem (a 4xx at the greeting, EHLO or AUTH; not a quota
// reply, not a 5xx), or the connection refused, reset or closed during the
// opening. A fault of the account's set-up or a timeout is not.
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
		return f.Code >= 400 && f.Code < 500 && routing.Classify(f) == routing.Connection
	}
	return errors.Is(de.Err, syscall.ECONNREFUSED) || errors.Is(de.Err, syscall.ECONNRESET) ||
		errors.Is(de.Err, io.EOF) || errors.Is(de.Err, io.ErrUnexpectedEOF)
}

// holdSlot is called with the slot of a dial that err ended: when the
// upstream turned away one more connection while others are open or
// opening, the slot stays taken (held) and holdSlot reports true;
// otherwise the caller frees it. A dial cut by the send's own context
// (a shutdown, a deadline) says nothing about the upstream.
func (p *Provider) holdSlot(ctx context.Context, err error) bool {
	if ctx.Err() != nil || !refusedNewConnection(err) {
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
	p.cfg.Logger.Info("upstream turned a new connection away while others worked; pool limit lowered",
		"event", "pool_limit", "limit", p.cfg.MaxConns-p.held, "open", p.open, "reply", err.Error())
	return true
}

// unhold gives back a slot holdSlot took.
func (p *Provider) unhold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held > 0 {
		p.held--
		<-p.slots // never blocks: each held slot is a token in slots
	}
}

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
		p.cfg.Logger.Info("trying one more upstream connection after a minute at the learned limit",
			"event", "pool_limit", "limit", p.cfg.MaxConns-p.held)
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

// refusedWait is a send waiting for an open connection after the upstream
// turned it away.
type refusedWait struct {
	p      *Provider
	err    error
	holds  int // slots this send held, one per refusal
	ticker *time.Ticker
}

func (p *Provider) newRefusedWait(err error) *refusedWait {
	return &refusedWait{p: p, err: err, ticker: time.NewTicker(refusedPoll)}
}

// tick is the channel acquire also waits on; nil (never ready) when the
// send was not turned away.
func (w *refusedWait) tick() <-chan time.Time {
	if w == nil {
		return nil
	}
	return w.ticker.C
}

// hopeless reports that no connection is open or opening any more.
func (w *refusedWait) hopeless() bool {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.open < 1 && w.p.dialing < 1
}

// end stops the wait; with giveBack it also frees the slots this send
// held (a send that got a connection, or whose context ended, leaves them
// held: the refusals did come while others worked).
func (w *refusedWait) end(giveBack bool) {
	if w == nil {
		return
	}
	w.ticker.Stop()
	for ; giveBack && w.holds > 0; w.holds-- {
		w.p.unhold()
	}
}
