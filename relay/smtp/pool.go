package smtp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// quitTimeout bounds the courtesy QUIT before a connection is closed.
const quitTimeout = time.Second

// Provider is a Custom SMTP upstream with its connection pool. It is safe
// for concurrent use. Close it when the provider is removed or its
// settings change (build a new one then): that ends its pooled sessions
// and the goroutine that reaps idle ones.
type Provider struct {
	cfg Config

	// slots holds one token per open connection, idle or busy, so its
	// capacity is MaxConns. idle holds authenticated sessions ready for
	// reuse; it never blocks a sender because there are never more
	// connections than its capacity.
	slots chan struct{}
	idle  chan *pconn

	mu      sync.Mutex
	closed  bool
	janitor bool
	// open counts established connections (idle or busy), dialing the
	// dials under way; held counts slots kept taken after the upstream
	// refused one more connection, since heldAt (busy.go).
	open    int
	dialing int
	held    int
	heldAt  time.Time
	done    chan struct{}
	wg      sync.WaitGroup
}

var (
	_ relay.Provider = (*Provider)(nil)
	_ relay.Closer   = (*Provider)(nil)
)

// New validates cfg, fills in defaults and returns a provider. It does
// not connect; the first Send (or Test) does.
func New(cfg Config) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Provider{
		cfg:   cfg,
		slots: make(chan struct{}, cfg.MaxConns),
		idle:  make(chan *pconn, cfg.MaxConns),
		done:  make(chan struct{}),
	}, nil
}

// Config returns the validated configuration, defaults filled in.
func (p *Provider) Config() Config { return p.cfg }

// acquire returns a session bound to ctx: a pooled one that still answers
// RSET, or a new one when a connection slot is free. It waits, within
// ctx, while MaxConns connections are busy.
func (p *Provider) acquire(ctx context.Context) (*pconn, error) {
	// After the upstream turned a new connection away while others were
	// open or opening, the send waits for one of those (busy.go).
	var w *refusedWait
	defer func() { w.end(false) }()
	retried := false
	for {
		select {
		case <-p.done:
			return nil, closedErr()
		default:
		}
		select {
		case pc := <-p.idle:
			if p.revive(ctx, pc) {
				return pc, nil
			}
			continue
		default:
		}
		slots := p.slots
		if w != nil {
			slots = nil // turned away: no more dials of its own
		}
		select {
		case pc := <-p.idle:
			if p.revive(ctx, pc) {
				return pc, nil
			}
		case slots <- struct{}{}:
			pc, err := p.dialPooled(ctx)
			if err != nil {
				if p.holdSlot(ctx, err) {
					w = p.newRefusedWait(err)
					w.holds++
					continue
				}
				<-p.slots
				return nil, err
			}
			return pc, nil
		case <-w.tick():
			if !w.hopeless() {
				continue
			}
			// Nothing open or opening: not the number of connections.
			w.end(true)
			refused := w.err
			w = nil
			if retried {
				return nil, refused
			}
			retried = true // one more dial of its own
		case <-ctx.Done():
			// Waiting for our own pool is not the upstream's fault: do
			// not let it count toward the breaker.
			return nil, &relay.DeliveryError{
				Failure: routing.Failure{Phase: routing.PhaseConnect},
				Class:   relay.ClassPtr(routing.Transient),
				Err:     fmt.Errorf("smtp: waiting for one of %d connections: %w", p.cfg.MaxConns, ctx.Err()),
			}
		case <-p.done:
			return nil, closedErr()
		}
	}
}

// redial replaces a pooled session the upstream had closed with a fresh
// one in the same slot: freeing the slot and waiting for another could
// wait behind every other send (at a learned limit the slots are always
// taken).
func (p *Provider) redial(ctx context.Context, stale *pconn) (*pconn, error) {
	p.closeConn(stale, false)
	pc, err := p.dialPooled(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return pc, nil
}

// dialPooled is dial for a connection of the pool, counted in p.open
// until discard.
func (p *Provider) dialPooled(ctx context.Context) (*pconn, error) {
	p.mu.Lock()
	p.dialing++
	p.mu.Unlock()
	pc, err := p.dial(ctx)
	p.mu.Lock()
	p.dialing--
	if err == nil {
		p.open++
	}
	p.mu.Unlock()
	return pc, err
}

// revive checks that an idle session is still usable: not idle too long,
// and, if it sat idle for more than freshIdle, answering RSET. A session
// reused at once skips the RSET round trip (the last transaction ended
// with its final reply, so the state is clean); if it died anyway, Send
// notices at MAIL, before anything was sent, and redials. A failed session
// is closed; the caller then takes another or dials.
func (p *Provider) revive(ctx context.Context, pc *pconn) bool {
	idle := time.Since(pc.idleAt)
	if idle > p.cfg.IdleTimeout {
		p.discard(pc, false)
		return false
	}
	pc.bind(ctx)
	pc.reused = true
	if idle <= freshIdle {
		return true
	}
	if err := pc.client.Reset(); err != nil {
		p.discard(pc, false)
		return false
	}
	return true
}

// freshIdle is how long a pooled session may sit idle and still be reused
// without an RSET first: under load sessions go straight from one
// transaction to the next.
const freshIdle = 2 * time.Second

// release returns a healthy session to the pool.
func (p *Provider) release(pc *pconn) {
	if !pc.unbind() {
		p.discard(pc, true)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.discard(pc, true)
		return
	}
	pc.idleAt = time.Now()
	p.idle <- pc // never blocks: at most cap(p.idle) connections exist
	p.startJanitor()
	p.mu.Unlock()
}

// startJanitor starts reap once; p.mu is held.
func (p *Provider) startJanitor() {
	if !p.janitor {
		p.janitor = true
		p.wg.Add(1)
		go p.reap()
	}
}

// discard closes a session and frees its slot; polite sends QUIT first,
// for sessions whose last exchange was a complete reply.
func (p *Provider) discard(pc *pconn, polite bool) {
	p.closeConn(pc, polite)
	<-p.slots
}

// closeConn closes a session, keeping its slot.
func (p *Provider) closeConn(pc *pconn, polite bool) {
	pc.unbind()
	if polite {
		pc.conn.setOp(time.Now().Add(quitTimeout))
		pc.client.Quit()
	}
	pc.client.Close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// reap closes sessions idle for longer than IdleTimeout until Close.
func (p *Provider) reap() {
	defer p.wg.Done()
	t := time.NewTicker(max(p.cfg.IdleTimeout/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.growHeld(time.Now())
		var keep []*pconn
	drain:
		for range cap(p.idle) {
			select {
			case pc := <-p.idle:
				if time.Since(pc.idleAt) > p.cfg.IdleTimeout {
					p.discard(pc, true)
				} else {
					keep = append(keep, pc)
				}
			default:
				break drain
			}
		}
		p.mu.Lock()
		closed := p.closed
		if !closed {
			for _, pc := range keep {
				p.idle <- pc
			}
		}
		p.mu.Unlock()
		if closed {
			for _, pc := range keep {
				p.discard(pc, true)
			}
			return
		}
	}
}

// Close closes idle sessions (with QUIT) and makes later and waiting Sends
// fail; sessions in use are closed when their Send ends. It implements
// relay.Closer and is idempotent.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for {
		select {
		case pc := <-p.idle:
			wg.Go(func() { p.discard(pc, true) })
			continue
		default:
		}
		break
	}
	wg.Wait()
	p.wg.Wait()
	return nil
}

func closedErr() *relay.DeliveryError {
	return &relay.DeliveryError{
		Failure: routing.Failure{Phase: routing.PhaseConnect},
		Class:   relay.ClassPtr(routing.Transient),
		Err:     ErrClosed,
	}
}
