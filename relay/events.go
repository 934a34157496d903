package relay

import (
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// Event types (SPEC §8).
const (
	EventDelivered       = "message.delivered"
	EventBounced         = "message.bounced"  // an upstream permanently refused recipients
	EventRejected        = "message.rejected" // the message finally failed (retries exhausted, uncertain)
	EventDelayed         = "message.delivery_delayed"
	EventProviderChanged = "provider.status_changed"
)

// Event is emitted after the result it reports is durable.
type Event struct {
	Type       string    `json:"type"`
	TeamID     string    `json:"team_id"`
	MessageID  string    `json:"message_id,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	Recipients []string  `json:"recipients,omitempty"`
	Code       int       `json:"code,omitempty"`
	Reply      string    `json:"reply,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Status     string    `json:"status,omitempty"` // provider.status_changed: the new status
	At         time.Time `json:"at"`
}

// EventSink receives events; it must not block the scheduler for long.
type EventSink func(Event)

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
	base := Event{TeamID: after.TeamID, MessageID: after.ID, ProviderID: providerID, Code: out.code, Reply: out.reply, At: now}
	emit := func(typ string, rcpts []string, reason string) {
		e := base
		e.Type, e.Recipients, e.Reason = typ, rcpts, reason
		s.cfg.Events(e)
	}
	if len(sent) > 0 {
		emit(EventDelivered, sent, "")
	}
	if len(bounced) > 0 {
		emit(EventBounced, bounced, "")
	}
	if len(failed) > 0 {
		emit(EventRejected, failed, after.Reason)
	}
	if after.State == store.StateQueued && after.Retries > before.Retries {
		emit(EventDelayed, after.PendingRecipients(), "")
	}
}

func (s *Scheduler) emitProvider(teamID, providerID, status, reason string) {
	if s.cfg.Events == nil {
		return
	}
	s.cfg.Events(Event{Type: EventProviderChanged, TeamID: teamID, ProviderID: providerID, Status: status,
		Reason: reason, At: s.now().UTC()})
}
