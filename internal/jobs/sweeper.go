// Package jobs holds smtpmux's periodic background work on the store that
// is no HTTP handler's business: the retention sweep (Sweeper) and the
// DNS re-check of sending domains (DomainChecker). cmd starts and stops
// them; the Management API shares only CheckDomain, the one verification
// step its POST /domains/{id}/verify runs on demand.
//
// It imports store and relay/dnscheck, nothing else of the project, so
// that neither admin (HTTP) nor relay (delivery) has to own a ticker that
// belongs to neither.
package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// Retention defaults (config [retention] body / log) and the fixed
// lifetime of webhook deliveries (SPEC §8).
const (
	DefaultBodyRetention = 72 * time.Hour
	DefaultLogRetention  = 30 * 24 * time.Hour
	deliveryRetention    = 7 * 24 * time.Hour
	// routeSetMargin is how much longer than the log the routing sets
	// its attempts refer to are kept (Sweep).
	routeSetMargin = 48 * time.Hour
)

// Sweeper deletes expired data in the background: log records (and any
// body left) of messages finished longer than LogRetention ago, bodies of
// messages finished longer than BodyRetention ago, idempotency records
// older than store.IdempotencyTTL and webhook deliveries older than 7
// days.
//
// Each pass deletes in batches of Batch records, one grouped commit per
// batch, and rests between batches at least Pause and long enough that
// batches take at most Duty of the pass's time: a large backlog (a first
// sweep of a big store, a retention shortened) never holds the store's
// committer, nor the CPU its reads and deletes need, from acceptance for
// more than that share, however long the pass then takes.
type Sweeper struct {
	st  *store.Store
	log *slog.Logger
	now func() time.Time

	BodyRetention time.Duration
	LogRetention  time.Duration
	// Interval between passes (default 10 minutes); the first pass runs
	// at once.
	Interval time.Duration
	Batch    int
	Pause    time.Duration
	// Duty is the most of a pass's time its batches may take, in (0, 1]
	// (default 0.1): after a batch that took d the pass rests
	// d×(1−Duty)/Duty. A value outside (0, 1] rests only Pause.
	Duty float64

	// clock measures batches; sleep rests. Test seams: the sweep's own
	// clock (now) decides what expired and is often fixed in tests.
	clock func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// SweepStats counts what one pass deleted.
type SweepStats struct {
	Messages, Bodies, IdempotencyKeys, Deliveries int
	// HistoryDays counts the day files of history dropped whole
	// (their messages count in Messages).
	HistoryDays int
	// RouteSets counts routing sets of days no kept attempt refers to.
	RouteSets int
	// RotatedSecrets counts API keys' previous secrets whose rotation
	// grace period had ended, dropped from the credential index.
	RotatedSecrets int
}

// NewSweeper returns the retention sweeper of st. A retention <= 0 takes
// its default; log nil discards, now nil is time.Now.
func NewSweeper(st *store.Store, log *slog.Logger, now func() time.Time, bodyRetention, logRetention time.Duration) *Sweeper {
	if bodyRetention <= 0 {
		bodyRetention = DefaultBodyRetention
	}
	if logRetention <= 0 {
		logRetention = DefaultLogRetention
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Sweeper{st: st, log: log, now: now, BodyRetention: bodyRetention, LogRetention: logRetention,
		Interval: 10 * time.Minute, Batch: DefaultSweepBatch, Pause: 20 * time.Millisecond, Duty: DefaultSweepDuty,
		clock: time.Now, sleep: sleepCtx}
}

// Sweep pacing defaults. 64 records per commit keep each sweep commit
// short (an SMTP DATA waiting behind it waits for it: 256 cost
// acceptance's p99 more); a duty of 10 % is issue 18's bound on what a
// sweep may cost acceptance.
const (
	DefaultSweepBatch = 64
	DefaultSweepDuty  = 0.1
)

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rest is how long to wait after a batch that took took.
func (w *Sweeper) rest(took time.Duration) time.Duration {
	d := w.Pause
	if w.Duty > 0 && w.Duty <= 1 {
		d = max(d, time.Duration(float64(took)*(1-w.Duty)/w.Duty))
	}
	return d
}

// Run sweeps every Interval until ctx ends.
func (w *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		st, err := w.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Error("retention sweep failed", "err", err)
		} else if st != (SweepStats{}) {
			w.log.Info("retention sweep", "messages", st.Messages, "history_days", st.HistoryDays, "bodies", st.Bodies,
				"idempotency_keys", st.IdempotencyKeys, "webhook_deliveries", st.Deliveries, "route_sets", st.RouteSets,
				"rotated_secrets", st.RotatedSecrets)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep runs one pass and reports what it deleted.
func (w *Sweeper) Sweep(ctx context.Context) (SweepStats, error) {
	var st SweepStats
	now := w.now()
	logCut, bodyCut := now.Add(-w.LogRetention), now.Add(-w.BodyRetention)
	// History past the log retention goes a day file at a time; the
	// walk after it deletes what finished too long ago but was not
	// moved to a day file yet (a mover far behind).
	var err error
	st.HistoryDays, st.Messages, err = w.st.DropHistory(logCut)
	if err == nil {
		err = w.walk(ctx, &st.Messages, func(after string) (int, string, error) {
			return w.st.SweepMessages(logCut, after, w.Batch)
		})
	}
	if err == nil {
		err = w.walk(ctx, &st.Bodies, func(after string) (int, string, error) {
			return w.st.SweepBodies(bodyCut, after, w.Batch)
		})
	}
	if err == nil {
		var n int
		n, err = w.st.SweepSpooled(bodyCut)
		st.Bodies += n
	}
	if err == nil {
		err = w.drain(ctx, &st.IdempotencyKeys, func() (int, bool, error) {
			return w.st.SweepIdempotency(now.Add(-store.IdempotencyTTL), w.Batch)
		})
	}
	if err == nil {
		err = w.drain(ctx, &st.Deliveries, func() (int, bool, error) {
			return w.st.SweepWebhookDeliveries(now.Add(-deliveryRetention), w.Batch)
		})
	}
	if err == nil {
		// An attempt refers to the routing set of its day; its message
		// is kept until LogRetention after it finished, and a message
		// finishes at most a retry schedule (about 14 h) after its last
		// attempt, so sets are kept two days longer.
		day := logCut.Add(-routeSetMargin).UTC().Format(store.RouteSetDayLayout)
		err = w.drain(ctx, &st.RouteSets, func() (int, bool, error) {
			return w.st.SweepRouteSets(day, w.Batch)
		})
	}
	if err == nil {
		st.RotatedSecrets, err = w.st.SweepRotatedKeys(now)
	}
	return st, err
}

// walk runs a cursor batch until the cursor is exhausted.
func (w *Sweeper) walk(ctx context.Context, count *int, batch func(after string) (int, string, error)) error {
	after := ""
	return w.drain(ctx, count, func() (int, bool, error) {
		n, next, err := batch(after)
		after = next
		return n, next != "", err
	})
}

// drain repeats one batch until it reports nothing more, resting between
// batches (rest) so that other writers get the committer and the CPUs.
func (w *Sweeper) drain(ctx context.Context, count *int, batch func() (int, bool, error)) error {
	for {
		start := w.clock()
		n, more, err := batch()
		*count += n
		if err != nil || !more {
			return err
		}
		if err := w.sleep(ctx, w.rest(w.clock().Sub(start))); err != nil {
			return err
		}
	}
}
