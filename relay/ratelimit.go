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
	if b.n >= r.limit {
		return false, b.start.Add(r.window).Sub(now)
	}
	b.n++
	return true, 0
}

// SetLimit changes the limit (config reload); counts so far are kept.
func (r *RateLimiter) SetLimit(limit int) {
	r.mu.Lock()
	r.limit = limit
	r.mu.Unlock()
}

// Over reports, without counting a request, whether id has used up its
// window (for checks made before the work the limit guards).
func (r *RateLimiter) Over(id string) bool {
	if r == nil {
		return false
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[id]
	return ok && r.limit > 0 && now.Sub(b.start) < r.window && b.n >= r.limit
}
