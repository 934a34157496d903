package relay

import (
	"sync"
	"time"
)

// touchEvery is how stale a last_used_at may get: recording every use
// would add a write per message.
const touchEvery = time.Minute

// toucher records last-use times at most once per touchEvery per ID, in
// the background so the mail path never waits for it.
type toucher struct {
	mu    sync.Mutex
	last  map[string]time.Time
	write func(id string, at time.Time) error
}

func newToucher(write func(string, time.Time) error) *toucher {
	return &toucher{last: map[string]time.Time{}, write: write}
}

func (t *toucher) touch(id string, now time.Time) {
	t.mu.Lock()
	if now.Sub(t.last[id]) < touchEvery {
		t.mu.Unlock()
		return
	}
	t.last[id] = now
	t.mu.Unlock()
	go t.write(id, now.UTC()) // best effort: a lost touch only ages the figure
}
