package relay

import (
	"sync"
	"time"
)

// RateLimiter bounds requests per credential in fixed one-minute windows
// (SPEC §4: 1,800 requests/min per key, shared by SMTP and HTTP; one SMTP
// transaction or one HTTP send/batch call is one request). It is exported
// so the HTTP Sending API shares the same counters.
type RateLimiter struct {
	limit  int // guarded by mu
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*rateBucket
	sweep   time.Time
}

type rateBucket struct {
	start time.Time
	n     int
}

// NewRateLimiter allows limit requests per window per credential; limit
// <= 0 disables limiting.
func NewRateLimiter(limit int, window time.Duration, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{limit: limit, window: window, now: now, buckets: map[string]*rateBucket{}}
}

// Allow counts one request of credential id and reports whether it is
// within the limit; if not, how long until the window resets.
func (r *RateLimiter) Allow(id string) (bool, time.Duration) {
	if r == nil {
		return true, 0
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit <= 0 {
		return true, 0
	}
	b := r.bucket(id, now)
	if b.n >= r.limit {
		return false, b.start.Add(r.window).Sub(now)
	}
	b.n++
	return true, 0
}

// Reserve counts one request of id before its outcome is known, as
// Allow does, and returns a func that gives the count back. It is how a
// failure limit counts an attempt before checking it: the count and the
// check are one step under the lock, so N parallel attempts cannot all
// pass a check that none of them has counted yet; an attempt that turns
// out well gives its count back. Giving back after the window it was
// counted in has ended does nothing. When !ok nothing was counted and
// giveBack is a no-op.
func (r *RateLimiter) Reserve(id string) (ok bool, wait time.Duration, giveBack func()) {
	if r == nil {
		return true, 0, func() {}
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit <= 0 {
		return true, 0, func() {}
	}
	b := r.bucket(id, now)
	if b.n >= r.limit {
		return false, b.start.Add(r.window).Sub(now), func() {}
	}
	b.n++
	var once sync.Once
	return true, 0, func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			// Only the window it was counted in: a newer bucket for id
			// holds other attempts' counts.
			if r.buckets[id] == b && b.n > 0 {
				b.n--
			}
		})
	}
}

// bucket returns id's bucket of the current window, starting a new one
// if needed. r.mu is held.
func (r *RateLimiter) bucket(id string, now time.Time) *rateBucket {
	if now.Sub(r.sweep) > r.window {
		// Forget idle credentials so the map does not grow without bound.
		for k, b := range r.buckets {
			if now.Sub(b.start) >= r.window {
				delete(r.buckets, k)
			}
		}
		r.sweep = now
	}
	b, ok := r.buckets[id]
	if !ok || now.Sub(b.start) >= r.window {
		b = &rateBucket{start: now}
		r.buckets[id] = b
	}
	return b
}

// SetLimit changes the limit (config reload); counts so far are kept.
func (r *RateLimiter) SetLimit(limit int) {
	r.mu.Lock()
	r.limit = limit
	r.mu.Unlock()
}
