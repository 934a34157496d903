package relay

import (
	"errors"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// When the store refuses a write (a full disk, an I/O error) the scheduler
// must neither spin on it (every due message claimed and refused again at
// once, thousands of times a second) nor forget what it learnt: an
// upstream's answer that cannot be recorded is kept and written when the
// store takes writes again, since a message left in flight is resent only
// after a restart, and a sent one must not be resent at all.

const (
	storeBackoffMin = 500 * time.Millisecond
	storeBackoffMax = 5 * time.Second
)

// storeGate pauses dispatch after a refused write, for a back-off that
// doubles while writes keep failing and resets on the first success.
type storeGate struct {
	mu      sync.Mutex
	until   time.Time
	backoff time.Duration
}

// failed notes a refused write at now and returns how long to wait.
func (g *storeGate) failed(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.backoff = min(max(2*g.backoff, storeBackoffMin), storeBackoffMax)
	g.until = now.Add(g.backoff)
	return g.backoff
}

// succeeded notes a write the store took.
func (g *storeGate) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.backoff, g.until = 0, time.Time{}
}

// closedUntil reports until when dispatch should start nothing new.
func (g *storeGate) closedUntil(now time.Time) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until, now.Before(g.until)
}

// storeTrouble reports whether err is the store refusing a write, as
// opposed to the answer of the write's own logic (the message finished
// or vanished meanwhile).
func storeTrouble(err error) bool {
	return err != nil && !errors.Is(err, errNotQueued) && !errors.Is(err, store.ErrNotFound)
}

// persist runs write until the store takes it, waiting out the gate's
// back-off between tries. It gives up only when shutdown cancels the
// attempts in progress; the message then stays in flight in the store,
// and Recover settles it at the next start.
func (s *Scheduler) persist(what, id string, write func() error) error {
	for {
		err := write()
		if !storeTrouble(err) {
			if err == nil {
				s.gate.succeeded()
			}
			return err
		}
		wait := s.gate.failed(s.now())
		s.log.Error(what+" failed; retrying", "msg_id", id, "err", err, "retry_in_ms", wait.Milliseconds())
		select {
		case <-s.sendCtx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
