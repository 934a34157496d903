package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/smtpmux/smtpmux/internal/crlf"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// noProviderDelay is how long a message waits when every provider in scope
// is only temporarily unable (over quota, pulled) before looking again.
const noProviderDelay = time.Second

// attempt is one look at due message id: a pick, then an attempt, a wait
// or a deferral.
//
// A message that is due before its NextAttemptAt while it waits was woken
// (wake.go): it goes only if a provider can take it now, and otherwise
// returns to its own due time without a record write (store.Repark).
func (s *Scheduler) attempt(id string) {
	m, err := s.store.Message(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("loading message failed", "msg_id", id, "err", err)
		return
	}
	if err != nil || m.State != store.StateQueued {
		// Found due but missing or not queued: its due entry is stray.
		// The loop reads nothing but the due index, so left there it
		// would be found again at every turn.
		s.dropStrayDue(id)
		return
	}
	// Read before anything the pick looks at: a wake after this read is
	// seen by the park (store.ParkMessage), one before it by the pick.
	gen, err := s.store.WakeGen(m.TeamID)
	if err != nil {
		s.log.Error("loading wake generation failed", "msg_id", id, "err", err)
		return
	}
	early := len(m.Waiting) > 0 && m.NextAttemptAt.After(s.now())
	later := func(why string, err error) {
		s.log.Error(why, "msg_id", id, "team", m.TeamID, "err", err)
		if early {
			s.repark(m, gen)
		} else {
			s.requeue(id, s.now().Add(noProviderDelay), gen)
		}
	}
	ps, err := s.reg.TeamProviders(m.TeamID)
	if err != nil {
		later("loading providers failed", err)
		return
	}
	m0 := m
	team, err := teamOf(s.store, m.TeamID)
	if err != nil {
		// Without the team its limit overrides are unknown: picking with
		// the defaults could exceed a lowered limit. Look again later.
		later("loading team failed", err)
		return
	}
	now := s.now()
	rs := s.routes.get(m.TeamID, m.Scope, ps)
	d, res := s.health.pickSet(m, rs, team, now, s.draw)
	if res == nil && early {
		s.repark(m, gen) // still nothing for it: back to its due time
		return
	}
	explanation := s.stored(rs, m, d, now)
	if res == nil {
		s.noProvider(m, d, explanation, gen)
		return
	}
	prov := rs.provs[d.Index]

	// Record the attempt before any network I/O: after a crash the
	// in-flight index shows exactly which attempts were under way. The
	// reserved quota is written in the same transaction.
	started := now.UTC()
	m, err = s.store.ClaimMessage(id, func(m *store.Message) error {
		if m.State != store.StateQueued {
			return errNotQueued
		}
		m.Attempts = append(m.Attempts, store.Attempt{N: len(m.Attempts) + 1, ProviderID: prov.ID,
			ProviderType: prov.Type, StartedAt: started, Status: state.AttemptInProgress, Routing: explanation})
		m.State, m.UpdatedAt, m.Waiting = store.StateInflight, started, nil
		m.ManagedReserved = 0 // handed over to the quota counter below
		return nil
	}, res.providerID, res.record)
	if err != nil {
		need := s.health.complete(res, false, s.now())
		if !storeTrouble(err) {
			s.wakeFor(m0.TeamID, need) // the probe or the unit it held is free again
		}
		if storeTrouble(err) {
			// The message is still queued and due: pause dispatch rather
			// than claim it (and every other one) again at once.
			wait := s.gate.failed(s.now())
			s.log.Error("claiming message failed", "msg_id", id, "err", err, "dispatch_paused_ms", wait.Milliseconds())
		}
		return
	}
	if reserved := m0.ManagedReserved; reserved > 0 {
		// The attempt's own reservation now counts these recipients.
		s.health.releaseManaged(m0.ManagedProviderID, reserved, m0.ReservedAt())
	}
	body, err := s.store.OpenBody(m)
	if err != nil {
		s.log.Error("loading body failed", "msg_id", id, "err", err)
		s.finish(m, prov, res, outcome{class: routing.Transient, reply: "internal: body unreadable"})
		return
	}
	// Typed attributes (LogAttrs): Info's ...any boxed each value.
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "attempt", slog.String("event", "attempt"),
		slog.String("msg_id", id), slog.String("team", m.TeamID), slog.String("provider", prov.ID),
		slog.Int("n", len(m.Attempts)))

	// Whatever its source (a message queued before bare line ends were
	// refused, a future path), no body reaches a provider with a bare CR
	// or LF: an upstream reading those as line ends would split it
	// (SMTP smuggling). Clean bodies are not copied.
	data, sentFrom := crlf.Normalize(body.Bytes()), m.From
	clean := data
	if s.cfg.Shaper != nil {
		shaped, from, err := s.cfg.Shaper.Shape(m, prov, data)
		if err != nil {
			// Shaping is best effort: the message goes as it came, and
			// the log says why it was not rewritten.
			s.log.Warn("shaping skipped", "msg_id", id, "provider", prov.ID, "err", err)
		} else {
			data, sentFrom = shaped, from
		}
	}
	if !sameSlice(data, clean) {
		// Shaping wrote new bytes: none of them may be a bare CR or LF
		// either. Bytes it passed through unchanged were checked above
		// (at 100 KiB a scan is a few per cent of an attempt's CPU).
		data = crlf.Normalize(data)
	}
	out := s.send(prov, m, data)
	out.sentFrom = sentFrom
	body.Release()
	out.duration = s.now().Sub(started)
	if out.interrupted {
		need := s.health.complete(res, false, s.now())
		s.requeue(id, s.now(), gen) // shutdown cut it before the body went out
		s.wakeFor(m.TeamID, need)   // for whoever runs next: the probe or the unit is free
		return
	}
	s.finish(m, prov, res, out)
}

var errNotQueued = errors.New("message is not queued")

// dropStrayDue deletes the due entries of message id, which the loop found
// due although the message is missing or not queued (store.DropStrayDue
// checks that again in its transaction).
func (s *Scheduler) dropStrayDue(id string) {
	n, err := s.store.DropStrayDue(id, s.now())
	if err != nil {
		wait := s.gate.failed(s.now()) // pause dispatch rather than spin on it
		s.log.Error("dropping a stray due entry failed", "msg_id", id, "err", err,
			"dispatch_paused_ms", wait.Milliseconds())
		return
	}
	if n > 0 {
		s.log.Warn("stray due entry dropped", "msg_id", id, "entries", n)
	}
}

// outcome is the classified result of one attempt.
type outcome struct {
	ok    bool
	class routing.Class
	// scope is whose problem the failure is, when routing's table
	// decided it ("" when the provider set the class itself).
	scope       routing.FailureScope
	code        int
	enhanced    string // the failure's RFC 3463 code, when it had one
	reply       string
	upstreamID  string
	refused     []RecipientReply
	duration    time.Duration
	interrupted bool
	// bodySent is true when the upstream received the whole message, so
	// the attempt consumed quota even if it then failed.
	bodySent bool
	// sentFrom is the From address the attempt's bytes carried.
	sentFrom string
}

func (s *Scheduler) send(prov *store.Provider, m *store.Message, body []byte) outcome {
	p, release, err := s.reg.Acquire(prov)
	if err != nil {
		// A provider that cannot even be built is misconfigured.
		return outcome{class: routing.Auth, reply: "provider unusable: " + err.Error()}
	}
	defer release()
	ctx, cancel := context.WithTimeout(s.sendCtx, s.cfg.AttemptTimeout)
	defer cancel()
	n := len(m.Attempts)
	markData := func() error { return s.store.MarkDataStarted(m.ID, n) }
	res, err := p.Send(ctx, Envelope{MessageID: m.ID, From: s.envelopeFrom(prov, m), To: m.PendingRecipients(), MarkData: markData}, body)
	if err == nil {
		return outcome{ok: true, bodySent: true, code: successCode(res.Reply), reply: res.Reply, upstreamID: res.UpstreamID, refused: res.Refused}
	}
	var de *DeliveryError
	if !errors.As(err, &de) {
		de = &DeliveryError{Failure: routing.Failure{Phase: routing.PhaseConnect, Text: err.Error()}, Err: err}
	}
	if s.sendCtx.Err() != nil && !de.Failure.BodySent && de.Failure.Code == 0 {
		return outcome{interrupted: true}
	}
	reply := de.Failure.Text
	if de.Failure.Code != 0 {
		reply = fmt.Sprintf("%d %s %s", de.Failure.Code, de.Failure.Enhanced, de.Failure.Text)
	} else if de.Err != nil {
		reply = de.Err.Error()
	}
	var scope routing.FailureScope
	if de.Class == nil {
		scope = routing.Decide(de.Failure).Scope
	}
	return outcome{class: de.Classified(), scope: scope, code: de.Failure.Code, enhanced: de.Failure.Enhanced, reply: reply, refused: de.RcptRefused,
		bodySent: de.Failure.BodySent || de.Failure.Phase == routing.PhaseFinal && de.Failure.Code != 0}
}

// requeue puts a claimed or skipped message back in the queue at t without
// counting a retry. gen is the team's wake generation read before the
// pick (attempt), for a message that goes on waiting.
func (s *Scheduler) requeue(id string, t time.Time, gen uint64) { s.requeueWaiting(id, t, nil, gen) }

// requeueWaiting is requeue that also records why the message waits.
func (s *Scheduler) requeueWaiting(id string, t time.Time, why []byte, gen uint64) {
	// A claimed message that cannot be put back would sit in flight, in
	// no queue, until a restart: keep trying (storefail.go).
	err := s.persist("requeue", id, func() error { return s.requeueOnce(id, t, why, gen) })
	if err != nil && storeTrouble(err) {
		s.log.Error("requeue failed", "msg_id", id, "err", err)
	}
}

func (s *Scheduler) requeueOnce(id string, t time.Time, why []byte, gen uint64) error {
	_, err := s.store.ParkMessage(id, gen, s.now().UTC(), func(m *store.Message) error {
		if why != nil {
			m.Waiting = why
		}
		if n := len(m.Attempts); n > 0 && m.State == store.StateInflight {
			m.Attempts[n-1].Status = state.AttemptInterrupt
		}
		if m.State == store.StateDone {
			return nil
		}
		m.State, m.NextAttemptAt, m.UpdatedAt = store.StateQueued, t.UTC(), s.now().UTC()
		return nil
	})
	return err
}

// repark returns a woken message that still finds no provider to its own
// due time (store.Repark). Left due, it would be picked again at once.
func (s *Scheduler) repark(m *store.Message, gen uint64) {
	if err := s.store.Repark(m.TeamID, m.ID, gen); err != nil {
		wait := s.gate.failed(s.now()) // pause dispatch rather than spin on it
		s.log.Error("returning a woken message to its due time failed", "msg_id", m.ID, "err", err,
			"dispatch_paused_ms", wait.Milliseconds())
	}
}

// noProvider handles a pick that found nothing eligible. If waiting can
// help (quota, breaker) the message waits for the earliest chance routing
// sees, looking again at least every maxWait; it is woken earlier when a
// provider of its team becomes usable (wake.go). If only providers that
// just failed this message remain, it defers on the retry schedule, and
// is woken too if one of them is proven back (a successful test).
// Otherwise nothing in scope can send: that is recorded as an attempt and
// counts as a temporary failure, so the schedule bounds how long the
// message is kept.
func (s *Scheduler) noProvider(m *store.Message, ex routing.Decision, explanation []byte, gen uint64) {
	now := s.now().UTC()
	if ex.Waiting {
		at := ex.RetryAt
		if at.IsZero() || at.Sub(now) > maxWait {
			at = now.Add(maxWait)
		}
		s.requeueWaiting(m.ID, at, explanation, gen)
		return
	}
	onlyAvoided := len(ex.Excluded) > 0
	for _, e := range ex.Excluded {
		if e.Reason != routing.ReasonAvoid && e.Reason != routing.ReasonInactive && e.Reason != routing.ReasonZeroWeight {
			onlyAvoided = false
		}
	}
	hasAvoided := false
	for _, e := range ex.Excluded {
		hasAvoided = hasAvoided || e.Reason == routing.ReasonAvoid
	}
	avoided := onlyAvoided && hasAvoided
	// A message failed here gives its acceptance reservations back.
	var unreserved int
	final, err := s.store.ParkMessage(m.ID, gen, now, func(m *store.Message) error {
		unreserved = 0
		if m.State != store.StateQueued {
			return errNotQueued
		}
		m.Waiting = nil
		if avoided {
			// It waits for the providers that just failed it; a
			// successful test of one of them wakes it (wake.go).
			m.Waiting = explanation
		} else {
			m.Attempts = append(m.Attempts, store.Attempt{N: len(m.Attempts) + 1, StartedAt: now,
				Status: state.AttemptDeferred, Class: routing.Transient.String(), Reply: "no_active_providers", Routing: explanation})
		}
		s.deferOrFail(m, now, "no_active_providers")
		if m.State == store.StateDone {
			unreserved, m.ManagedReserved = m.ManagedReserved, 0
		}
		return nil
	})
	if err == nil && unreserved > 0 {
		s.health.releaseManaged(final.ManagedProviderID, unreserved, final.ReservedAt())
	}
	if storeTrouble(err) {
		// Still queued and due: pause dispatch instead of a hot loop.
		wait := s.gate.failed(s.now())
		s.log.Error("recording no_active_providers failed", "msg_id", m.ID, "err", err, "dispatch_paused_ms", wait.Milliseconds())
		return
	}
	if err == nil {
		s.logFinal(final, nil, outcome{reply: "no_active_providers"})
		s.emitAttempt(m, final, "", outcome{reply: "no_active_providers"})
	}
}

// maxWait bounds how long a waiting message goes without a fresh pick.
// Changes that make a provider usable wake waiting messages at once
// (wake.go), and the times routing knows (end of a pull, of a quota
// window) are their due times, so this is only a safety net; each look
// costs a write per waiting message, which adds up with a big queue.
const maxWait = 10 * time.Minute

// successCode is the code an accepted attempt records (the attempt's
// "code", the sent log line's): the upstream's own when its reply starts
// with one ("250 2.0.0 Ok: queued as …"), else 250, the SMTP meaning of
// "accepted", as the recipients it delivered record. Providers that speak
// an API (SES) have no reply code of their own.
func successCode(reply string) int {
	if len(reply) >= 3 && (len(reply) == 3 || reply[3] == ' ' || reply[3] == '-') {
		if n, err := strconv.Atoi(reply[:3]); err == nil && n >= 200 && n < 300 {
			return n
		}
	}
	return 250
}

// sameSlice reports whether a and b are the same bytes in memory (not
// merely equal ones).
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
