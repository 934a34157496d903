package relay

import (
	"github.com/smtpmux/smtpmux/internal/event"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// EventSink receives events, each after the result it reports is durable;
// it must not block the scheduler for long.
type EventSink func(event.Event)

// emitAttempt reports what one finished attempt changed.
func (s *Scheduler) emitAttempt(before, after *store.Message, providerID string, out outcome) {
	if s.cfg.Events == nil {
		return
	}
	was := map[string]state.Message{}
	for _, r := range before.Recipients {
		was[r.Address] = r.Status
	}
	var sent, bounced, failed []string
	for _, r := range after.Recipients {
		if was[r.Address] == r.Status {
			continue
		}
		switch r.Status {
		case state.MessageSent:
			sent = append(sent, r.Address)
		case state.MessageRejected:
			bounced = append(bounced, r.Address)
		case state.MessageFailed:
			failed = append(failed, r.Address)
		}
	}
	now := s.now().UTC()
	base := event.Event{TeamID: after.TeamID, MessageID: after.ID, ProviderID: providerID, Code: out.code, Reply: out.reply, At: now}
	emit := func(typ string, rcpts []string, reason string) {
		e := base
		e.Type, e.Recipients, e.Reason = typ, rcpts, reason
		s.cfg.Events(e)
	}
	if len(sent) > 0 {
		emit(event.Delivered, sent, "")
	}
	if len(bounced) > 0 {
		s.emitBounces(base, before, after, bounced)
	}
	if len(failed) > 0 {
		emit(event.Rejected, failed, after.Reason)
		s.emitBounces(base, before, after, failed)
	}
	if after.State == store.StateQueued && after.Retries > before.Retries {
		emit(event.Delayed, after.PendingRecipients(), "")
	}
}

func (s *Scheduler) emitProvider(teamID, providerID, status, reason string) {
	if s.cfg.Events == nil {
		return
	}
	s.cfg.Events(event.Event{Type: event.ProviderStatusChanged, TeamID: teamID, ProviderID: providerID, Status: status,
		Reason: reason, At: s.now().UTC()})
}

// emitBounces emits message.bounced for rcpts, one event per bounce type:
// recipients whose refusal this attempt recorded as a bounce (hard, or
// soft when retries ran out) carry bounce_type, source and diagnostic
// code; other rejected recipients (a policy or message refusal, which
// says nothing about the address) keep the event with bounce_type null,
// as before. Failed recipients without a soft bounce emit nothing here.
func (s *Scheduler) emitBounces(base event.Event, before, after *store.Message, rcpts []string) {
	had := map[string]int{}
	for _, r := range before.Recipients {
		had[r.Address] = len(r.Feedback)
	}
	want := map[string]bool{}
	for _, a := range rcpts {
		want[a] = true
	}
	byType := map[string][]string{}
	diag := map[string]string{}
	var order []string
	for _, r := range after.Recipients {
		if !want[r.Address] {
			continue
		}
		typ := ""
		if fb := r.Feedback[min(had[r.Address], len(r.Feedback)):]; len(fb) > 0 && fb[0].Kind == store.FeedbackBounce {
			typ = fb[0].Type
			diag[typ] = fb[0].Diagnostic
		} else if r.Status == state.MessageFailed {
			continue
		}
		if _, ok := byType[typ]; !ok {
			order = append(order, typ)
		}
		byType[typ] = append(byType[typ], r.Address)
	}
	for _, typ := range order {
		e := base
		e.Type, e.Recipients = event.Bounced, byType[typ]
		e.Extra = map[string]any{"bounce_type": nil, "source": "smtp", "diagnostic_code": nil}
		if typ != "" {
			e.Extra["bounce_type"], e.Extra["diagnostic_code"] = typ, diag[typ]
			s.cfg.Metrics.bounced(base.ProviderID, typ, "smtp")
		}
		s.cfg.Events(e)
	}
}
