package webhook

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/store"
)

// DefaultSchedule is when a failing delivery is retried, as offsets from
// the moment its event was queued (the hosted product's schedule): eight
// retries after the first attempt, the last 24 hours after the event.
var DefaultSchedule = []time.Duration{
	30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 4 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// Options configure a Dispatcher. Store and Sealer are required.
type Options struct {
	Store  *store.Store
	Sealer *store.Sealer // opens the webhooks' signing secrets
	Logger *slog.Logger  // nil discards
	Now    func() time.Time
	// Client posts deliveries; nil builds one with NewClient.
	Client *http.Client
	// AllowPrivateTargets lets webhooks reach loopback and private
	// addresses (development, tests); off in production.
	AllowPrivateTargets bool
	// Timeout bounds one attempt (default 10 s, what receivers are told).
	Timeout time.Duration
	// Schedule overrides DefaultSchedule (offsets from the event).
	Schedule []time.Duration
	// MaxInflight bounds concurrent POSTs (default 32); PerEndpoint bounds
	// them per webhook (default 2), so a slow endpoint holds at most that
	// many slots and the others keep flowing.
	MaxInflight int
	PerEndpoint int
	// IdlePoll is how often Run looks for due deliveries without being
	// woken (default 30 s); a safety net, kicks and timers do the work.
	IdlePoll time.Duration
}

// Dispatcher queues events for the webhooks that want them and delivers
// them. Emit may be called from any goroutine; Run delivers until its
// context ends.
type Dispatcher struct {
	opts     Options
	st       *store.Store
	log      *slog.Logger
	client   *http.Client
	kick     chan struct{}
	finished chan struct{}

	mu       sync.Mutex
	inflight map[string]bool // delivery IDs being attempted
	busy     map[string]int  // webhook ID → attempts under way
	cache    map[string]teamHooks
	wg       sync.WaitGroup
}

type teamHooks struct {
	hooks []*store.Webhook
	at    time.Time
}

// hookCacheTTL bounds how stale the per-team webhook list Emit matches
// against can be when a write bypassed Invalidate.
const hookCacheTTL = 10 * time.Second

// New builds a Dispatcher, filling defaults.
func New(opts Options) *Dispatcher {
	if opts.Store == nil || opts.Sealer == nil {
		panic("webhook.New: Options.Store and Options.Sealer are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if len(opts.Schedule) == 0 {
		opts.Schedule = DefaultSchedule
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 32
	}
	if opts.PerEndpoint <= 0 {
		opts.PerEndpoint = 2
	}
	if opts.IdlePoll <= 0 {
		opts.IdlePoll = 30 * time.Second
	}
	if opts.Client == nil {
		opts.Client = NewClient(opts.Timeout, opts.AllowPrivateTargets)
	}
	return &Dispatcher{opts: opts, st: opts.Store, log: opts.Logger, client: opts.Client,
		kick: make(chan struct{}, 1), finished: make(chan struct{}, 1),
		inflight: map[string]bool{}, busy: map[string]int{}, cache: map[string]teamHooks{}}
}

func (d *Dispatcher) now() time.Time { return d.opts.Now().UTC() }

// Kick wakes Run to look for due deliveries.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Invalidate forgets the cached webhook lists; admin calls it after every
// webhook write so that new subscriptions see the very next event.
func (d *Dispatcher) Invalidate() {
	d.mu.Lock()
	clear(d.cache)
	d.mu.Unlock()
}

// hooksFor returns the team's webhooks, cached: Emit runs for every
// delivery outcome, and the list changes rarely.
func (d *Dispatcher) hooksFor(teamID string) ([]*store.Webhook, error) {
	now := time.Now()
	d.mu.Lock()
	c, ok := d.cache[teamID]
	d.mu.Unlock()
	if ok && now.Sub(c.at) < hookCacheTTL {
		return c.hooks, nil
	}
	hooks, err := d.st.Webhooks(teamID)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cache[teamID] = teamHooks{hooks: hooks, at: now}
	d.mu.Unlock()
	return hooks, nil
}

// Emit queues e for every enabled webhook of its team subscribed to its
// type. It has the shape of relay.EventSink, so cmd passes it to the
// scheduler as is, and returns once the deliveries are durable; with
// no matching webhook it only reads a cached list. Errors are logged: the
// relay has nobody to report them to.
func (d *Dispatcher) Emit(e event.Event) {
	if _, _, err := d.Publish(e); err != nil {
		d.log.Error("webhook event not queued", "type", e.Type, "team", e.TeamID, "msg_id", e.MessageID, "err", err)
	}
}

// Publish is Emit that reports the event ID ("" when no webhook wanted
// it), how many deliveries were queued, and the error.
func (d *Dispatcher) Publish(e event.Event) (eventID string, n int, err error) {
	hooks, err := d.hooksFor(e.TeamID)
	if err != nil {
		return "", 0, err
	}
	var targets []*store.Webhook
	for _, w := range hooks {
		if w.Wants(e.Type) {
			targets = append(targets, w)
		}
	}
	if len(targets) == 0 {
		return "", 0, nil
	}
	return d.queue(e, targets)
}

// SendTest queues a synthetic smtpmux.test event for w alone, whatever
// its event types, and returns the event and delivery IDs.
func (d *Dispatcher) SendTest(w *store.Webhook) (eventID, deliveryID string, err error) {
	e := event.Event{Type: event.Test, TeamID: w.TeamID, Extra: map[string]any{
		"webhook_id": w.ID, "message": "This is a test event sent by POST /api/v1/webhooks/" + w.ID + "/test.",
	}}
	now := d.now()
	eventID = store.NewIDAt(store.PrefixEvent, now)
	env, err := newEnvelope(eventID, e, now)
	if err != nil {
		return "", "", err
	}
	dl := newDelivery(w, eventID, e.Type, env, now)
	if err := d.st.EnqueueWebhookDeliveries([]*store.WebhookDelivery{dl}); err != nil {
		return "", "", err
	}
	d.Kick()
	return eventID, dl.ID, nil
}

func (d *Dispatcher) queue(e event.Event, targets []*store.Webhook) (string, int, error) {
	now := d.now()
	eventID := store.NewIDAt(store.PrefixEvent, now)
	env, err := newEnvelope(eventID, e, now)
	if err != nil {
		return "", 0, err
	}
	ds := make([]*store.WebhookDelivery, 0, len(targets))
	for _, w := range targets {
		ds = append(ds, newDelivery(w, eventID, e.Type, env, now))
	}
	if err := d.st.EnqueueWebhookDeliveries(ds); err != nil {
		return "", 0, err
	}
	d.Kick()
	return eventID, len(ds), nil
}

// newDelivery IDs carry the dispatcher clock's time, like CreatedAt, so
// that the retention sweep (which seeks by the time in IDs) agrees with it.
func newDelivery(w *store.Webhook, eventID, typ string, env []byte, now time.Time) *store.WebhookDelivery {
	return &store.WebhookDelivery{ID: store.NewIDAt(store.PrefixDelivery, now), WebhookID: w.ID, TeamID: w.TeamID,
		EventID: eventID, EventType: typ, Event: env, Status: store.DeliveryPending, NextAttemptAt: now, CreatedAt: now}
}

// Run delivers due deliveries until ctx ends, then waits for the attempts
// under way (each bounded by Options.Timeout) and returns.
func (d *Dispatcher) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := d.dispatch(ctx)
		wait := d.opts.IdlePoll
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(d.now()), 10*time.Millisecond))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			d.wg.Wait()
			return
		case <-d.kick:
		case <-d.finished:
		case <-timer.C:
		}
	}
}

// DeliverDue attempts every delivery due now, waits for the attempts, and
// repeats until nothing is due; it returns how many attempts it made.
// Tests drive the dispatcher with it and a fake clock instead of Run.
func (d *Dispatcher) DeliverDue(ctx context.Context) int {
	total := 0
	for {
		n := d.startDue(ctx)
		d.wg.Wait()
		if n == 0 {
			return total
		}
		total += n
	}
}

func (d *Dispatcher) dispatch(ctx context.Context) time.Time {
	d.startDue(ctx)
	_, next, err := d.st.DueWebhookDeliveries(d.now(), 0, nil)
	if err != nil {
		d.log.Error("webhook due scan failed", "err", err)
	}
	return next
}

// startDue starts an attempt for each due delivery that fits the global
// and per-endpoint bounds, and returns how many it started.
func (d *Dispatcher) startDue(ctx context.Context) int {
	d.mu.Lock()
	free := d.opts.MaxInflight - len(d.inflight)
	d.mu.Unlock()
	if free <= 0 {
		return 0
	}
	picked := map[string]string{} // delivery → webhook
	perHook := map[string]int{}
	ids, _, err := d.st.DueWebhookDeliveries(d.now(), free, func(id, wh string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.inflight[id] || d.busy[wh]+perHook[wh] >= d.opts.PerEndpoint || len(picked) >= free {
			return true
		}
		perHook[wh]++
		picked[id] = wh
		return false
	})
	if err != nil {
		d.log.Error("webhook due scan failed", "err", err)
		return 0
	}
	// Attempts outlive a cancelled Run context by at most Timeout, so a
	// shutdown records their outcome instead of calling them failures.
	actx := context.WithoutCancel(ctx)
	for _, id := range ids {
		wh := picked[id]
		d.mu.Lock()
		d.inflight[id] = true
		d.busy[wh]++
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.attempt(actx, id)
			d.mu.Lock()
			delete(d.inflight, id)
			if d.busy[wh]--; d.busy[wh] <= 0 {
				delete(d.busy, wh)
			}
			d.mu.Unlock()
			select {
			case d.finished <- struct{}{}:
			default:
			}
		}()
	}
	return len(ids)
}
