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
		emit(event.Bounced, bounced, "")
	}
	if len(failed) > 0 {
		emit(event.Rejected, failed, after.Reason)
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
