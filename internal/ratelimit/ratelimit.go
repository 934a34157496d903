// Package ratelimit is smtpmux's one fixed-window counter per key: the
// per-key send limit shared by SMTP and the HTTP Sending API, the failed
// authentication allowance per client address, and the Management API's
// per-key request limit all count with it.
//
// A fixed window is what an X-RateLimit-Reset header describes exactly
// ("this many left until then"); a sliding log would cost memory per
// request for no benefit at these rates. The state is per process, which
// is right while one process owns the store.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter allows a number of requests per key in fixed windows. A nil
// *Limiter, or one whose limit is <= 0, allows everything.
type Limiter struct {
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	limit   int // guarded by mu: SetLimit changes it on a config reload
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	start time.Time
	n     int
}

// Result is the outcome of Take, what X-RateLimit-* headers report.
type Result struct {
	Allowed   bool
	Limit     int
	Remaining int           // requests left in the window after this one
	Reset     time.Duration // until the current window ends
}

// New allows limit requests per window per key; limit <= 0 disables
// limiting. now nil means time.Now.
func New(limit int, window time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{limit: limit, window: window, now: now, buckets: map[string]*bucket{}}
}

// Take counts one request of key and reports whether it is within the
// limit. Refused requests are not counted, so a client hammering through
// a refusal does not extend its own penalty beyond the window.
func (l *Limiter) Take(key string) Result {
	if l == nil {
		return Result{Allowed: true}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit <= 0 {
		return Result{Allowed: true}
	}
	b := l.bucket(key, now)
	res := Result{Limit: l.limit, Reset: b.start.Add(l.window).Sub(now)}
	if b.n >= l.limit {
		return res
	}
	b.n++
	res.Allowed, res.Remaining = true, l.limit-b.n
	return res
}

// Allow is Take for callers that need only the verdict and, when refused,
// how long until the window resets.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	r := l.Take(key)
	if r.Allowed {
		return true, 0
	}
	return false, r.Reset
}

// Reserve counts one request of key before its outcome is known, as
// Allow does, and returns a func that gives the count back. It is how a
// failure limit counts an attempt before checking it: the count and the
// check are one step under the lock, so N parallel attempts cannot all
// pass a check that none of them has counted yet; an attempt that turns
// out well gives its count back. Giving back after the window it was
// counted in has ended does nothing. When !ok nothing was counted and
// giveBack is a no-op.
func (l *Limiter) Reserve(key string) (ok bool, wait time.Duration, giveBack func()) {
	if l == nil {
		return true, 0, func() {}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit <= 0 {
		return true, 0, func() {}
	}
	b := l.bucket(key, now)
	if b.n >= l.limit {
		return false, b.start.Add(l.window).Sub(now), func() {}
	}
	b.n++
	var once sync.Once
	return true, 0, func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			// Only the window it was counted in: a newer bucket for key
			// holds other attempts' counts.
			if l.buckets[key] == b && b.n > 0 {
				b.n--
			}
		})
	}
}

// bucket returns key's bucket of the current window, starting a new one
// if needed. l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *bucket {
	if now.Sub(l.sweep) >= l.window {
		// Forget idle keys once per window so that keys that stopped
		// calling (or were revoked) do not accumulate forever.
		for k, b := range l.buckets {
			if now.Sub(b.start) >= l.window {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b, ok := l.buckets[key]
	if !ok || now.Sub(b.start) >= l.window {
		b = &bucket{start: now}
		l.buckets[key] = b
	}
	return b
}

// SetLimit changes the limit (config reload); counts so far are kept.
func (l *Limiter) SetLimit(limit int) {
	l.mu.Lock()
	l.limit = limit
	l.mu.Unlock()
}
