package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/store"
)

// Retention defaults (config [retention] body / log) and the fixed
// lifetimes of idempotency records (SPEC §3) and webhook deliveries
// (SPEC §8).
const (
	defaultBodyRetention = 72 * time.Hour
	defaultLogRetention  = 30 * 24 * time.Hour
	deliveryRetention    = 7 * 24 * time.Hour
)

// initSending completes New for the Sending API, idempotency and webhooks.
func (s *Server) initSending() {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	s.boot = hex.EncodeToString(b)
	if s.opts.BodyRetention <= 0 {
		s.opts.BodyRetention = defaultBodyRetention
	}
	if s.opts.LogRetention <= 0 {
		s.opts.LogRetention = defaultLogRetention
	}
	s.hooks = s.opts.Webhooks
	if s.hooks == nil {
		s.hooks = webhook.New(webhook.Options{Store: s.st, Sealer: s.opts.Sealer, Logger: s.log, Now: s.opts.Now,
			AllowPrivateTargets: s.opts.AllowPrivateWebhookTargets})
	}
}

// Webhooks returns the dispatcher the server queues webhook events with.
func (s *Server) Webhooks() *webhook.Dispatcher { return s.hooks }

// Sweeper deletes expired data in the background: log records (and any
// body left) of messages finished longer than LogRetention ago, bodies of
// messages finished longer than BodyRetention ago, idempotency records
// older than 24 hours and webhook deliveries older than 7 days.
//
// Each pass deletes in batches of Batch records, one grouped commit per
// batch with a Pause between batches, so a large backlog never holds the
// store's committer (and with it SMTP and HTTP acceptance) for long.
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
}

// SweepStats counts what one pass deleted.
type SweepStats struct {
	Messages, Bodies, IdempotencyKeys, Deliveries int
	// RotatedSecrets counts API keys' previous secrets whose rotation
	// grace period had ended, dropped from the credential index.
	RotatedSecrets int
}

// Sweeper returns the retention sweeper for this server's store and
// options; cmd runs it with Run.
func (s *Server) Sweeper() *Sweeper {
	return &Sweeper{st: s.st, log: s.log, now: s.opts.Now, BodyRetention: s.opts.BodyRetention,
		LogRetention: s.opts.LogRetention, Interval: 10 * time.Minute, Batch: 256, Pause: 20 * time.Millisecond}
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
			w.log.Info("retention sweep", "messages", st.Messages, "bodies", st.Bodies,
				"idempotency_keys", st.IdempotencyKeys, "webhook_deliveries", st.Deliveries,
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
	err := w.walk(ctx, &st.Messages, func(after string) (int, string, error) {
		return w.st.SweepMessages(logCut, after, w.Batch)
	})
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
			return w.st.SweepIdempotency(now.Add(-idempotencyTTL), w.Batch)
		})
	}
	if err == nil {
		err = w.drain(ctx, &st.Deliveries, func() (int, bool, error) {
			return w.st.SweepWebhookDeliveries(now.Add(-deliveryRetention), w.Batch)
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

// drain repeats one batch until it reports nothing more, pausing between
// batches so that other writers get the committer.
func (w *Sweeper) drain(ctx context.Context, count *int, batch func() (int, bool, error)) error {
	for {
		n, more, err := batch()
		*count += n
		if err != nil || !more {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.Pause):
		}
	}
}
