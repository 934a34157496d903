package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// finish records an attempt's outcome on the message and the provider.
func (s *Scheduler) finish(m *store.Message, prov *store.Provider, res *reservation, out outcome) {
	now := s.now().UTC()
	outcomeLabel := "sent"
	if !out.ok {
		outcomeLabel = out.class.String()
	}
	s.cfg.Metrics.attempt(prov.ID, outcomeLabel, out.duration)
	// The breaker hears the outcome before the reservation ends: ending a
	// half-open probe's reservation lets the next probe go, which must
	// find this failure counted (its store write takes an fsync).
	pulled, recovered, berr := s.health.outcome(prov.ID, out.ok, out.class, now)
	if berr != nil {
		// The in-memory state decides; a restart would forget this change.
		s.log.Error("storing breaker state failed", "provider", prov.ID, "err", berr)
	}
	need := s.health.complete(res, out.bodySent, now)
	if pulled {
		s.log.Warn("provider pulled from rotation", "event", "provider_pulled", "provider", prov.ID,
			"until", s.health.snapshot(prov.ID, now).PulledUntil, "class", out.class.String())
	}
	if recovered {
		// The probe after a pull went through: the messages that waited
		// behind it may go now.
		s.log.Info("provider back in rotation after a successful attempt", "event", "provider_recovered",
			"provider", prov.ID, "team", prov.TeamID)
		s.Wake(prov.TeamID)
	} else {
		// A probe that ended any other way (the breaker still half-open
		// lets the next one through), or quota handed back: messages
		// parked behind it have nothing else to wake them early. After
		// the breaker heard the outcome, so a re-pulled provider wakes
		// no one (Wake checks the team has a usable provider).
		s.wakeFor(prov.TeamID, need)
	}
	if out.ok {
		s.used.Touch(prov.ID, now)
	}
	var plan *reportPlan
	if !out.ok || len(out.refused) > 0 {
		// This attempt may finish the message with failed recipients;
		// the body is gone once that is stored.
		plan = s.planReport(m)
	}
	var final *store.Message
	err := s.persist("recording attempt result", m.ID, func() (err error) {
		final, err = s.store.UpdateMessage(m.ID, func(m *store.Message) error { return s.settle(m, prov.ID, out, now) })
		return err
	})
	if errors.Is(err, errNotQueued) {
		s.log.Warn("attempt result was already recorded", "msg_id", m.ID)
		return
	}
	if err != nil {
		// Shutdown gave up waiting for the store: the attempt stays in
		// flight there and Recover settles it at the next start.
		s.log.Error("recording attempt result failed", "msg_id", m.ID, "err", err)
		return
	}
	if !out.ok && out.class == routing.Auth {
		s.markProviderError(prov, out.reply)
	}
	s.logFinal(final, prov, out)
	s.reportFinal(plan, final)
	s.emitAttempt(m, final, prov.ID, out)
	for _, id := range feedbackProviders(m, final) {
		s.CheckManagedHold(final.TeamID, id)
	}
}

// settle applies an attempt's outcome to the stored message: finished,
// moved on to another provider at once, deferred or failed.
func (s *Scheduler) settle(m *store.Message, provID string, out outcome, now time.Time) error {
	if n := len(m.Attempts); m.State != store.StateInflight || n == 0 || m.Attempts[n-1].Status != state.AttemptInProgress {
		// Already settled: a write reported as failed that had landed
		// (persist retries it). Applying it twice would count a retry
		// twice.
		return errNotQueued
	}
	applyOutcome(m, provID, out, now)
	if out.ok {
		m.SentFromEmail = out.sentFrom
	}
	if m.PendingCount() == 0 {
		m.State, m.Status = store.StateDone, aggregateStatus(m)
		return nil
	}
	if !out.ok && out.class == routing.Auth {
		// Move on to another provider at once; this one is skipped
		// for this message from now on.
		if m.AuthFailed == nil {
			m.AuthFailed = map[string]time.Time{}
		}
		m.AuthFailed[provID] = now
		m.State, m.NextAttemptAt = store.StateQueued, now
		return nil
	}
	if !out.ok && (out.class == routing.Connection || out.class == routing.Quota) {
		// Failover: try the other providers in scope at once; this one is
		// avoided until the message's next scheduled retry.
		if m.Avoid == nil {
			m.Avoid = map[string]time.Time{}
		}
		m.Avoid[provID] = now.Add(s.retryDelay(m.Retries))
		m.State, m.NextAttemptAt = store.StateQueued, now
		return nil
	}
	s.deferOrFail(m, now, "retries_exhausted")
	return nil
}

// applyOutcome updates the last attempt and the pending recipients.
func applyOutcome(m *store.Message, providerID string, out outcome, now time.Time) {
	a := &m.Attempts[len(m.Attempts)-1]
	a.DurationMS, a.Code, a.Reply, a.UpstreamID = out.duration.Milliseconds(), out.code, out.reply, out.upstreamID
	a.SentFrom = out.sentFrom
	refused := make(map[string]RecipientReply, len(out.refused))
	for _, r := range out.refused {
		refused[strings.ToLower(r.Rcpt)] = r
	}
	anyRefused := false
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.Status != state.MessagePending {
			continue
		}
		t := now
		if rr, ok := refused[strings.ToLower(r.Address)]; ok {
			anyRefused = true
			r.Code, r.Reply, r.UpdatedAt = rr.Code, fmt.Sprintf("%d %s %s", rr.Code, rr.Enhanced, rr.Text), &t
			kind := routing.BounceOf(routing.Failure{Phase: routing.PhaseRcpt, Code: rr.Code, Enhanced: rr.Enhanced, Text: rr.Text})
			r.Soft = kind == routing.BounceSoft
			if rr.Code >= 500 {
				r.Status = state.MessageRejected
				if kind == routing.BounceHard {
					r.Feedback = append(r.Feedback, syncBounce(store.BounceHard, rr.Enhanced, r.Reply, providerID, now))
				}
			}
			continue // a 4xx for this recipient: it stays pending
		}
		switch {
		case out.ok:
			r.Status, r.ProviderID, r.Code, r.Reply, r.UpdatedAt = state.MessageSent, providerID, 250, out.reply, &t
			r.Soft = false
		case out.class == routing.Permanent:
			r.Status, r.Code, r.Reply, r.UpdatedAt = state.MessageRejected, out.code, out.reply, &t
			if out.scope == routing.ScopeRecipient {
				// The whole transaction failed on the recipient (a
				// one-recipient RCPT, or a final 550 5.1.1).
				r.Feedback = append(r.Feedback, syncBounce(store.BounceHard, out.enhanced, out.reply, providerID, now))
			}
		case out.class == routing.Uncertain:
			r.Status, r.Reply, r.UpdatedAt = state.MessageFailed, out.reply, &t
		default:
			r.Soft = out.scope == routing.ScopeRecipient
		}
	}
	switch {
	case out.ok && anyRefused:
		a.Status = state.AttemptPartial
	case out.ok:
		a.Status = state.AttemptSent
	case out.class == routing.Permanent:
		a.Status, a.Class = state.AttemptRejected, out.class.String()
	case out.class == routing.Uncertain:
		a.Status, a.Class = state.AttemptFailed, out.class.String()
		m.Reason = "uncertain"
	default:
		a.Status, a.Class = state.AttemptDeferred, out.class.String()
	}
	m.UpdatedAt = now
}

// retryDelay is the wait before retry number n (the last step repeats).
func (s *Scheduler) retryDelay(n int) time.Duration {
	sched := s.cfg.RetrySchedule
	if len(sched) == 0 {
		return time.Minute
	}
	return sched[min(n, len(sched)-1)]
}

// deferOrFail schedules the next try of a message with pending recipients
// on the retry schedule, or fails them when the schedule is exhausted.
func (s *Scheduler) deferOrFail(m *store.Message, now time.Time, reason string) {
	if t, ok := routing.NextRetry(s.cfg.RetrySchedule, m.Retries, now, s.jitter()); ok {
		m.Retries++
		m.State, m.NextAttemptAt = store.StateQueued, t
		return
	}
	for i := range m.Recipients {
		if r := &m.Recipients[i]; r.Status == state.MessagePending {
			r.Status = state.MessageFailed
			if r.Soft {
				// Its own temporary trouble until the end: a soft
				// bounce, which suppresses only after several in a row.
				r.Feedback = append(r.Feedback, syncBounce(store.BounceSoft, "", r.Reply, "", now))
			}
		}
	}
	m.Reason = reason
	m.State, m.Status = store.StateDone, aggregateStatus(m)
}

// aggregateStatus is the message status once no recipient is pending:
// sent if any recipient got it, else failed if any failed, else rejected;
// suppressed when every recipient was (none was tried).
func aggregateStatus(m *store.Message) state.Message {
	status, tried := state.MessageRejected, false
	for _, r := range m.Recipients {
		if r.Status != state.MessageSuppressed {
			tried = true
		}
		switch r.Status {
		case state.MessageSent:
			return state.MessageSent
		case state.MessagePending:
			return state.MessagePending
		case state.MessageFailed:
			status = state.MessageFailed
		}
	}
	if !tried {
		return state.MessageSuppressed
	}
	return status
}

// oauthGrantRevoked marks the failure text of a revoked OAuth grant (the
// relay/oauth/mailapi convention; relay does not import provider packages).
const oauthGrantRevoked = "oauth_grant_revoked:"

// markProviderError takes a provider whose credentials or configuration
// the upstream refused out of rotation until an operator fixes it.
//
// A connected account whose grant was revoked goes to pending instead: it
// needs the user to connect it again, not a configuration fix.
func (s *Scheduler) markProviderError(prov *store.Provider, reply string) {
	status, reason := state.ProviderError, "authentication failed: "+reply
	if strings.Contains(reply, oauthGrantRevoked) {
		status, reason = state.ProviderPending, "the account's authorisation was revoked; connect it again: "+reply
	}
	_, err := s.store.UpdateProvider("", prov.ID, 0, func(p *store.Provider) error {
		p.Status = status
		p.StatusReason = reason
		p.UpdatedAt = s.now().UTC()
		return nil
	})
	if err != nil {
		s.log.Error("marking provider error failed", "provider", prov.ID, "err", err)
		return
	}
	s.log.Warn("provider status changed", "event", "provider_status", "provider", prov.ID, "status", status)
	s.emitProvider(prov.TeamID, prov.ID, string(status), reason)
}

// logFinal writes the one log line of an attempt's result.
func (s *Scheduler) logFinal(m *store.Message, prov *store.Provider, out outcome) {
	provID := ""
	if prov != nil {
		provID = prov.ID
	}
	event := "deferred"
	switch {
	case m.State == store.StateDone && m.Status == state.MessageSent:
		event = "sent"
	case m.State == store.StateDone && m.Status == state.MessageRejected:
		event = "rejected"
	case m.State == store.StateDone:
		event = "failed"
	}
	// Typed attributes in an array on the stack: Info's ...any boxed each
	// value, 7–10 allocations per line (issue 19). Same kinds, same line.
	var buf [10]slog.Attr
	attrs := append(buf[:0], slog.String("event", event), slog.String("msg_id", m.ID),
		slog.String("team", m.TeamID), slog.String("provider", provID))
	if out.code != 0 { // no reply code (a connection error): none logged rather than a made-up 0
		attrs = append(attrs, slog.Int("code", out.code))
	}
	if !out.ok {
		attrs = append(attrs, slog.String("class", out.class.String()), slog.String("reply", out.reply))
		if out.scope != "" {
			attrs = append(attrs, slog.String("scope", string(out.scope)))
		}
	}
	if m.State == store.StateQueued {
		attrs = append(attrs, slog.Time("next_attempt_at", m.NextAttemptAt))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, event, attrs...)
}

// syncBounce is the feedback entry of a bounce the upstream gave in the
// SMTP (or API) conversation itself.
func syncBounce(kind, enhanced, reply, providerID string, now time.Time) store.Feedback {
	return store.Feedback{Kind: store.FeedbackBounce, Type: kind, Source: "smtp", Status: enhanced,
		Diagnostic: reply, ProviderID: providerID, At: now}
}
