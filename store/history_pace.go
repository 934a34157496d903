package store

// The mover's pace: how fast finished messages leave the main file for
// their day files, and what that may cost acceptance (issue 18).

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// HistoryBacklog reports how many finished messages wait in the main file
// for the mover (entries of its work list, a few of them possibly stale)
// and when the oldest of them finished (zero when none): an operator's
// (Depths, on /metrics) and a benchmark's view of whether the mover keeps
// up.
func (s *Store) HistoryBacklog() (n int, oldest time.Time, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		n, oldest = historyBacklog(tx)
		return nil
	})
	return n, oldest, err
}

// historyBacklog is HistoryBacklog in tx (a walk of the work list's
// pages: callers that keep RSS low drop the map after it, as Depths does).
func historyBacklog(tx *bolt.Tx) (n int, oldest time.Time) {
	c := tx.Bucket(bFinished).Cursor()
	if k, _ := c.First(); len(k) >= 8 {
		oldest = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC()
	}
	return tx.Bucket(bFinished).Stats().KeyN, oldest
}

// The mover's pacing. Moving a message costs the main file about as much
// as accepting one (its record, index keys and counters are deleted in a
// grouped commit that acceptance writes share), so a mover that runs
// flat out while mail is accepted costs acceptance a large share: 26–68 %
// of throughput and 4–5× its p99 with 256-record steps resting 3× their
// time (bench/RESULTS.md, session 8). It therefore runs flat out only
// while no other write reached the committer during its step, and
// otherwise rests so that its work takes historyMoveDuty of the time: the
// time its commits run in the committer, its reads and its day-file
// writes (moverBusy), not its waits for the committer. Its commits are
// small (moverSubChunk records), so a step spends most of its wall time
// waiting through acceptance commits; charged for that wait, it rested
// so long that it moved ~1,000/s only with larger commits, which tripled
// acceptance's p99 at a steady 2,500/s (bench/RESULTS.md, session 11). A
// fixed share can fall behind a sustained intake for good, so the share
// grows with how far behind the mover is (moverDuty), up to
// historyMoveMaxDuty: a backlog drains, and acceptance pays more only
// while one is that old.
const (
	// historyMoveDuty is the mover's share of time while other writes
	// wait and its backlog is at most historyLagFree behind.
	historyMoveDuty = 0.1
	// historyMoveMaxDuty is its share once historyLagMax behind.
	historyMoveMaxDuty = 0.5
	historyLagFree     = time.Minute
	historyLagMax      = 10 * time.Minute
)

// moverDuty is the mover's share of time while other writes wait, when
// the oldest message it has to move finished lag past historyMoveDelay.
func moverDuty(lag time.Duration) float64 {
	switch {
	case lag <= historyLagFree:
		return historyMoveDuty
	case lag >= historyLagMax:
		return historyMoveMaxDuty
	}
	f := float64(lag-historyLagFree) / float64(historyLagMax-historyLagFree)
	return historyMoveDuty + f*(historyMoveMaxDuty-historyMoveDuty)
}

// moverRest is how long the mover rests after a step that took took:
// nothing if no other write was committed meanwhile (nobody waited for
// its commits), else what keeps its steps to moverDuty(lag) of the time.
func moverRest(took time.Duration, othersWrote bool, lag time.Duration) time.Duration {
	if !othersWrote {
		return 0
	}
	d := moverDuty(lag)
	return time.Duration(float64(took) * (1 - d) / d)
}

// moverBurst bounds how long the mover's own CPU work runs without a
// pause while other writes flow: its reads and decoding of a step's
// records, and its puts into their day file. A step's 1,024 records took
// the mover's goroutine tens of milliseconds of CPU, run in slices of up
// to 10 ms (the runtime's preemption), each holding one of the machine's
// two cores from the sessions, the committer and, end to end, the load
// driver: acceptance's p99 rose 60–80 % with the mover's CPU at 3 % of a
// core (a runtime trace of bench/mover.sh, bench/RESULTS.md session 14).
// runtime.Gosched between records did not help: it hands the P to a
// runnable goroutine but keeps the core busy. A pause does not. (A
// variable for tests.)
var moverBurst = 500 * time.Microsecond

// moverPacer breaks a step's CPU work into bursts of at most moverBurst,
// each followed by a pause as long while other writes flow (rests counts
// the pauses, which the step's rest after it then leaves out). A nil
// pacer never pauses (MoveHistory from tests and tools, recoverHistory).
type moverPacer struct {
	s      *Store
	start  time.Time
	rests  time.Duration
	pauses int
}

func newMoverPacer(s *Store) *moverPacer { return &moverPacer{s: s, start: time.Now()} }

// due reports whether the current burst has had its time.
func (p *moverPacer) due() bool { return p != nil && time.Since(p.start) >= moverBurst }

// pause ends the current burst: a pause of moverBurst if other writes
// flow, then a new burst.
func (p *moverPacer) pause() {
	if p == nil {
		return
	}
	if p.s.writesFlowing() {
		t0 := time.Now()
		time.Sleep(moverBurst)
		p.rests, p.pauses = p.rests+time.Since(t0), p.pauses+1
	}
	p.start = time.Now()
}

// tick pauses if the burst is due: between two records or keys.
func (p *moverPacer) tick() {
	if p.due() {
		p.pause()
	}
}

// rested is how long p has paused so far.
func (p *moverPacer) rested() time.Duration {
	if p == nil {
		return 0
	}
	return p.rests
}

// moverUpdate is update for the mover's own commits, which do not count
// as other writes (foreignWrites) in its pacing. The time fn runs is the
// step's (moverBusy).
func (s *Store) moverUpdate(fn func(*bolt.Tx) error) error {
	timed := func(tx *bolt.Tx) error {
		defer s.chargeMover(time.Now())
		return fn(tx)
	}
	return s.submit(&op{fn: timed, done: make(chan error, 1), background: true})
}

// chargeMover adds the time since start to the mover's step (moverBusy).
func (s *Store) chargeMover(start time.Time) { s.moverBusy.Add(int64(time.Since(start))) }

// runMover moves finished messages to their day files until ctx ends:
// step after step while there is a backlog (paced by moverRest), else
// once a second.
func (s *Store) runMover(ctx context.Context) {
	defer s.moverGroup.Done()
	for {
		start := time.Now()
		w0 := s.foreignWrites.Load()
		s.moverBusy.Store(0)
		var more bool
		var err error
		if s.recoverPending.Load() {
			if err = s.recoverHistory(); err == nil {
				s.recoverPending.Store(false)
			}
		}
		pacer := newMoverPacer(s)
		if err == nil {
			_, more, err = s.moveHistory(start.Add(-s.histDelay), historyMoveBatch, pacer)
		}
		if err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("moving finished messages to the history files failed", "err", err)
		}
		wait := time.Second
		if more && err == nil {
			var lag time.Duration
			if o := s.moverOldest.Load(); o != 0 {
				lag = start.Sub(time.Unix(0, o)) - s.histDelay
			}
			// Charged for what the step did, not for its waits for the
			// committer: its commits are small (moverSubChunk records),
			// so a step waits through many acceptance commits.
			// Less the pauses the step took already.
			wait = moverRest(time.Duration(s.moverBusy.Load()), s.foreignWrites.Load() != w0, lag) - pacer.rests
		}
		if wait <= 0 {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
