package relay

import (
	"context"
	"github.com/smtpmux/smtpmux/internal/deliverability"
	"github.com/smtpmux/smtpmux/internal/verp"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// SchedulerConfig holds the delivery side's settings.
type SchedulerConfig struct {
	RetrySchedule []time.Duration
	// MaxInflight bounds attempts in progress across all providers.
	MaxInflight int
	// AttemptTimeout bounds one upstream attempt end to end.
	AttemptTimeout time.Duration
	// IdlePoll is how often the queue is looked at when nothing kicks it.
	IdlePoll time.Duration
	// Managed are the default limits of managed accounts.
	Managed ManagedLimits
	// Events, when set, receives delivery and provider events.
	Events EventSink
	// Metrics, when set, records Prometheus series.
	Metrics *Metrics
	// VERP, when set, mints VERP return paths for SMTP providers with a
	// return-path domain (theirs, else BounceDomain); tokens are valid
	// for ReturnPathTTL (default 30 days).
	VERP          *verp.Signer
	BounceDomain  string
	ReturnPathTTL time.Duration
	// Deliverability are the rate thresholds that hold a managed account
	// (zero: deliverability.Defaults).
	Deliverability deliverability.Thresholds
	// Shaper, when set, rewrites each attempt's bytes for its provider.
	Shaper Shaper
	// Quota, when set, is asked on top of the local quota check for the
	// providers' quotas across the cluster (cluster mode).
	Quota QuotaGate
	// Breakers keeps breaker state beyond the process; nil is the node's
	// own store (StoreBreakers). Cluster mode shares it through etcd.
	Breakers BreakerStore
}

// Scheduler moves due messages to providers: claim (attempt recorded
// before any network I/O), pick, send, classify, record.
type Scheduler struct {
	cfg SchedulerConfig
	// levels is each provider's worst deliverability level when last
	// judged (hold.go), so that provider.deliverability_warning is sent
	// once per upward crossing, not per bounce.
	levels levelMemory
	store  *store.Store
	reg    *Registry
	health *health
	routes routeSets       // the teams' candidate sets per scope (routeset.go)
	used   *store.LastUsed // providers' last_used_at
	log    *slog.Logger
	now    func() time.Time
	draw   func(n int) int
	// jitter draws the uniform [0, 1) value that spreads retry times
	// (routing.NextRetry); a test seam like draw.
	jitter func() float64

	// reports sends failure reports (failreports.go); set by NewServer,
	// nil in a Scheduler without one.
	reports atomic.Pointer[failureReporter]

	kick chan struct{}
	slot chan struct{}
	// turns counts Run's finished turns (wake round + dispatch). Tests
	// wait for it to move past an event instead of sleeping: a turn that
	// started after the event has acted on it.
	turns atomic.Uint64

	mu sync.Mutex
	// active are the messages with an attempt running in this process:
	// still in the due index until claimed, they must not start twice.
	active map[string]bool
	// gate pauses dispatch while the store refuses writes (storefail.go).
	gate storeGate
	wg   sync.WaitGroup
	// sendCtx is cancelled only when shutdown gives up waiting, so that
	// attempts in progress get the chance to finish and be recorded.
	sendCtx    context.Context
	cancelSend context.CancelFunc
}

// NewScheduler returns a scheduler; call Run to start it.
func NewScheduler(cfg SchedulerConfig, st *store.Store, reg *Registry, logger *slog.Logger, now func() time.Time) *Scheduler {
	if now == nil {
		now = time.Now
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 256
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 10 * time.Minute
	}
	if cfg.IdlePoll <= 0 {
		cfg.IdlePoll = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{cfg: cfg, store: st, reg: reg, log: logger, now: now, health: newHealth(cfg.Managed, cfg.Quota),
		used: store.NewLastUsed(st.TouchProvider),
		draw: func(n int) int { return rand.IntN(n) }, jitter: rand.Float64,
		kick: make(chan struct{}, 1), slot: make(chan struct{}, cfg.MaxInflight),
		active: map[string]bool{}, sendCtx: ctx, cancelSend: cancel}
	// A gate that fetches capacity in the background says when it
	// arrived, so picks it refused meanwhile need not wait for their due
	// times.
	s.health.breakers = cfg.Breakers
	if s.health.breakers == nil {
		s.health.breakers = StoreBreakers{St: st}
	}
	if n, ok := cfg.Quota.(interface{ OnRefill(func(string)) }); ok {
		n.OnRefill(s.quotaRefilled)
	}
	return s
}

// quotaRefilled wakes the team of provider id: the cluster's quota gate
// got capacity for it that picks were refused while it was on its way.
func (s *Scheduler) quotaRefilled(id string) {
	p, err := s.store.Provider(id)
	if err != nil {
		return // its messages keep their own (short) due times
	}
	s.Wake(p.TeamID)
}

// Kick wakes the scheduler because something became due.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Recover readies the scheduler at start: it reloads quota usage,
// managed-account reservations and the teams with waiting mail, then
// settles the attempts that were in progress when the daemon last stopped.
// One stopped before the body was handed to the upstream is requeued, due
// now. One stopped after may have been delivered, so it is failed as
// "uncertain" and never resent: a duplicate to the recipient is worse than
// a failure the team can see and retry. It returns how many attempts it
// settled.
func (s *Scheduler) Recover() (int, error) {
	usage, err := s.store.Usage()
	if err != nil {
		return 0, err
	}
	s.health.load(usage)
	reservations, err := s.store.ManagedReservations()
	if err != nil {
		return 0, err
	}
	s.health.restoreManaged(reservations, s.now())
	breakers, err := s.health.breakers.Breakers()
	if err != nil {
		return 0, err
	}
	s.health.loadBreakers(breakers)
	ids, err := s.store.Inflight()
	if err != nil {
		return 0, err
	}
	now := s.now().UTC()
	for _, id := range ids {
		sent, err := s.store.DataStarted(id)
		if err != nil {
			return 0, err
		}
		uncertain := false
		m, err := s.store.UpdateMessage(id, func(m *store.Message) error {
			uncertain = false
			n := len(m.Attempts)
			if n > 0 && sent == n {
				m.Attempts[n-1].DataStarted = true
				// The body may have reached the upstream: resending could
				// duplicate it, so it is flagged, never sent again.
				uncertain = true
				a := &m.Attempts[n-1]
				a.Status, a.Class, a.Reply = state.AttemptFailed, "uncertain", "interrupted after the body was handed to the upstream"
				for i := range m.Recipients {
					if r := &m.Recipients[i]; r.Status == state.MessagePending {
						r.Status, r.Reply, r.UpdatedAt = state.MessageFailed, a.Reply, &now
					}
				}
				m.Reason, m.State, m.UpdatedAt = "uncertain", store.StateDone, now
				m.Status = aggregateStatus(m)
				return nil
			}
			if n > 0 && m.Attempts[n-1].Status == state.AttemptInProgress {
				m.Attempts[n-1].Status = state.AttemptInterrupt
			}
			m.State, m.NextAttemptAt, m.UpdatedAt = store.StateQueued, now, now
			return nil
		})
		if err != nil {
			return 0, err
		}
		if uncertain {
			s.log.Warn("failed", "event", "failed", "msg_id", id, "team", m.TeamID, "reason", "uncertain",
				"detail", "the daemon stopped after handing the body to the upstream")
			continue
		}
		s.log.Info("attempt interrupted by restart, requeued", "event", "requeued", "msg_id", id)
	}
	return len(ids), nil
}

// Run claims and delivers due messages until ctx is cancelled, then waits
// for attempts in progress (see Stop). It is the one loop over the one due
// index: a kick (an enqueue, a finished attempt, a wake), the timer at the
// next due time, or the provider counter's poll (wake.go) turns it.
func (s *Scheduler) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	providersGen := int64(-1)
	for {
		s.wakeOnProviderChange(&providersGen)
		next := s.dispatch()
		s.turns.Add(1)
		wait := min(s.cfg.IdlePoll, wakePoll)
		if !next.IsZero() {
			if d := next.Sub(s.now()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// dispatch starts an attempt for every due message while slots are free,
// and returns when the next queued message falls due.
func (s *Scheduler) dispatch() time.Time {
	for {
		free := cap(s.slot) - len(s.slot)
		if free == 0 {
			return time.Time{} // a finishing attempt kicks us
		}
		if until, closed := s.gate.closedUntil(s.now()); closed {
			return until // the store refuses writes: claims would too
		}
		ids, next, err := s.store.Due(s.now(), free, s.isActive)
		if err != nil {
			s.log.Error("reading due queue failed", "err", err)
			return s.now().Add(time.Second)
		}
		for _, id := range ids {
			s.start(id)
		}
		if len(ids) < free {
			return next
		}
	}
}

func (s *Scheduler) isActive(id []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[string(id)] // no copy: a map index converts in place
}

// start runs an attempt of message id in its own goroutine.
func (s *Scheduler) start(id string) {
	s.mu.Lock()
	s.active[id] = true
	s.mu.Unlock()
	s.slot <- struct{}{}
	s.wg.Add(1)
	go func() {
		defer func() {
			// Inactive before the kick, so the turn it causes can start
			// the message again if it is still (or again) due.
			s.mu.Lock()
			delete(s.active, id)
			s.mu.Unlock()
			<-s.slot
			s.wg.Done()
			s.Kick()
		}()
		s.attempt(id)
	}()
}

// Gauges returns every provider's breaker and quota state, for metrics.
func (s *Scheduler) Gauges() (map[string]ProviderGauge, error) {
	all, err := s.store.Providers("")
	if err != nil {
		return nil, err
	}
	teams := map[string]*store.Team{}
	out := make(map[string]ProviderGauge, len(all))
	now := s.now()
	for _, p := range all {
		t, ok := teams[p.TeamID]
		if !ok {
			var err error
			if t, err = teamOf(s.store, p.TeamID); err != nil {
				return nil, err // a gauge without the team's limits would be wrong
			}
			teams[p.TeamID] = t
		}
		out[p.ID] = s.health.gauge(p, t, now)
	}
	return out, nil
}

// ManagedUsage returns a managed account's usage in the current UTC hour
// and day, as acceptance counts it (managed.go): sent or in flight, and
// accepted but still queued.
func (s *Scheduler) ManagedUsage(providerID string) (ManagedUsage, bool) {
	return s.health.managedUsage(providerID, s.now())
}

// Stop waits for attempts in progress until ctx ends; then it cancels them.
// An attempt cancelled before its body went out is put back in the queue
// without counting a retry; one cancelled later is recorded like any other
// failed attempt. Whatever a crash cuts short instead, Recover settles at
// the next start.
func (s *Scheduler) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancelSend()
		<-done
	}
}
