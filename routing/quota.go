package routing

import (
	"hash/fnv"
	"time"
)

// Window is a quota window (SPEC §2 quotas).
type Window int

// Quota windows. Second is sliding; the others are fixed, aligned to UTC
// (a day is a UTC day, reset at 00:00 UTC).
const (
	Second Window = iota
	Minute
	Hour
	Day
	numWindows
)

var windowNames = [...]string{"per_second", "per_minute", "per_hour", "per_day"}

func (w Window) String() string { return windowNames[w] }

// Limit is a configured cap: fixed when Min == Max, otherwise a value in
// [Min, Max] drawn at each hourly refresh and held until the next.
type Limit struct{ Min, Max int }

// Limits are a provider's caps by window; nil means unlimited.
type Limits [numWindows]*Limit

// Effective returns the cap in force at t. The hourly draw of a range is
// a hash of the provider and the UTC hour, so every node and every restart
// agrees on it without storing it.
func (l Limit) Effective(providerID string, t time.Time) int {
	if l.Max <= l.Min {
		return l.Min
	}
	h := fnv.New64a()
	h.Write([]byte(providerID))
	var b [8]byte
	hour := uint64(t.UTC().Unix() / 3600)
	for i := range b {
		b[i] = byte(hour >> (8 * i))
	}
	h.Write(b[:])
	return l.Min + int(h.Sum64()%uint64(l.Max-l.Min+1))
}

// WindowStart is the start of the fixed window containing t.
func WindowStart(w Window, t time.Time) time.Time {
	t = t.UTC()
	switch w {
	case Minute:
		return t.Truncate(time.Minute)
	case Hour:
		return t.Truncate(time.Hour)
	case Day:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	}
	return t
}

func windowEnd(w Window, start time.Time) time.Time {
	switch w {
	case Minute:
		return start.Add(time.Minute)
	case Hour:
		return start.Add(time.Hour)
	case Day:
		return start.AddDate(0, 0, 1)
	}
	return start.Add(time.Second)
}

// Usage is one provider's quota state. The fixed windows count reserved
// units (in flight plus consumed). The second window is sliding and counts
// in-flight units plus units completed within the last second: an upstream
// then never sees more than the cap in any one-second span, because each
// delivery completes after it started and completions are what it sees.
//
// Usage is plain data with no clock or lock; the relay serialises access.
type Usage struct {
	Start    [numWindows]time.Time
	Count    [numWindows]int
	inflight int
	recent   []time.Time // completion times, oldest first, within 1 s
}

// Roll resets the windows that ended before now (for readers; Check,
// Reserve and Complete roll by themselves).
func (u *Usage) Roll(now time.Time) { u.roll(now) }

// InSecond is the sliding second window's use: in flight plus completed
// within the last second (as of the last roll).
func (u *Usage) InSecond() int { return u.inflight + len(u.recent) }

// roll resets the fixed windows that ended before now.
func (u *Usage) roll(now time.Time) {
	// Within the minute last rolled to, the hour and the day are those
	// of that roll too: the common case costs one comparison, not three
	// window computations (a pick checks every provider in scope).
	inMinute := !u.Start[Minute].IsZero() && !now.Before(u.Start[Minute]) && now.Before(u.Start[Minute].Add(time.Minute))
	for w := Minute; w < numWindows && !inMinute; w++ {
		if s := WindowStart(w, now); !s.Equal(u.Start[w]) {
			u.Start[w], u.Count[w] = s, 0
		}
	}
	cut := now.Add(-time.Second)
	i := 0
	for i < len(u.recent) && !u.recent[i].After(cut) {
		i++
	}
	u.recent = u.recent[i:]
}

// Check reports whether n more units fit under every limit at now, and if
// not, the earliest time worth trying again. A request larger than a cap
// fits when its window is empty, so an oversized message is not stuck.
func (u *Usage) Check(id string, l Limits, n int, now time.Time) (bool, time.Time) {
	if l == (Limits{}) {
		return true, time.Time{} // unlimited: nothing to count against
	}
	u.roll(now)
	var retry time.Time
	later := func(t time.Time) {
		if t.After(retry) {
			retry = t
		}
	}
	if l[Second] != nil {
		c := l[Second].Effective(id, now)
		used := u.inflight + len(u.recent)
		if used > 0 && used+n > c {
			if len(u.recent) > 0 {
				later(u.recent[0].Add(time.Second))
			} else {
				later(now.Add(50 * time.Millisecond)) // all in flight: look again soon
			}
		}
	}
	for w := Minute; w < numWindows; w++ {
		if l[w] == nil {
			continue
		}
		if c := l[w].Effective(id, now); u.Count[w] > 0 && u.Count[w]+n > c {
			later(windowEnd(w, u.Start[w]))
		}
	}
	return retry.IsZero(), retry
}

// Reserve takes n units at now; the caller checked first.
func (u *Usage) Reserve(n int, now time.Time) {
	u.roll(now)
	u.inflight += n
	for w := Minute; w < numWindows; w++ {
		u.Count[w] += n
	}
}

// Complete ends a reservation. consumed reports whether the upstream
// received the message; units not consumed are returned to every window
// they were taken from (if that window is still current).
func (u *Usage) Complete(n int, reservedAt time.Time, consumed bool, now time.Time) {
	u.roll(now)
	u.inflight -= n
	if u.inflight < 0 {
		u.inflight = 0
	}
	if consumed {
		for i := 0; i < n; i++ {
			u.recent = append(u.recent, now)
		}
		return
	}
	for w := Minute; w < numWindows; w++ {
		if u.Start[w].Equal(WindowStart(w, reservedAt)) {
			u.Count[w] = max(0, u.Count[w]-n)
		}
	}
}
