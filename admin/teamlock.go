package admin

import "sync"

// teamLocks hands out one mutex per team. "Count the team's own
// providers, then create one" must not interleave with another create of
// the same team (both could take the last place), but creates of
// different teams have nothing to order: with one lock for all, a team's
// POST /providers waited for every other team's commit in flight.
type teamLocks struct {
	mu    sync.Mutex
	locks map[string]*teamLock
}

type teamLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; the entry goes when it drops to 0
}

// lock takes teamID's mutex and returns its release.
func (l *teamLocks) lock(teamID string) (unlock func()) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[string]*teamLock)
	}
	tl := l.locks[teamID]
	if tl == nil {
		tl = &teamLock{}
		l.locks[teamID] = tl
	}
	tl.refs++
	l.mu.Unlock()
	tl.mu.Lock()
	return func() {
		tl.mu.Unlock()
		l.mu.Lock()
		if tl.refs--; tl.refs == 0 {
			delete(l.locks, teamID)
		}
		l.mu.Unlock()
	}
}
