package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// emailItem is GET /emails/{id}: the message's outcome, per recipient and
// per attempt, so a user can see why a message went where it went.
type emailItem struct {
	ID     string        `json:"id"`
	Status state.Message `json:"status"`
	Reason *string       `json:"reason"`
	// Waiting explains why a pending message has no attempt under way
	// (the last routing decision that found every provider over quota or
	// pulled), or null.
	Waiting       json.RawMessage `json:"waiting"`
	Source        string          `json:"source"`
	From          string          `json:"from"`
	Subject       *string         `json:"subject"`
	Size          int64           `json:"size"`
	Recipients    []recipientItem `json:"recipients"`
	SentFromEmail *string         `json:"sent_from_email"`
	// NextAttemptAt is set while the message waits for a retry.
	NextAttemptAt *string       `json:"next_attempt_at"`
	Attempts      []attemptItem `json:"attempts"`
	CreatedAt     string        `json:"created_at"`
	UpdatedAt     string        `json:"updated_at"`
}

type recipientItem struct {
	Email      string        `json:"email"`
	Status     state.Message `json:"status"`
	Code       *int          `json:"code"`
	Reply      *string       `json:"reply"`
	ProviderID *string       `json:"provider_id"`
}

type attemptItem struct {
	Number       int           `json:"number"`
	ProviderID   *string       `json:"provider_id"`
	ProviderType *string       `json:"provider_type"`
	StartedAt    string        `json:"started_at"`
	DurationMS   int64         `json:"duration_ms"`
	Status       state.Attempt `json:"status"`
	Class        *string       `json:"class"`
	Code         *int          `json:"code"`
	// Reply is the upstream's reply (or the error) for this attempt.
	Reply      *string `json:"reply"`
	UpstreamID *string `json:"upstream_id"`
	// Routing is the routing explanation recorded with the pick, passed
	// through as stored: admin does not interpret it.
	Routing json.RawMessage `json:"routing"`
}

func (s *Server) getEmail(c *call) error {
	id, ok := c.pathID(store.PrefixMessage)
	if !ok {
		return errNotFound("email")
	}
	m, err := s.st.Message(id)
	if errors.Is(err, store.ErrNotFound) {
		// Cluster mode: accepted on another node, which holds it.
		if handled, err := s.forwardEmail(c, id); handled {
			return err
		}
	}
	if errors.Is(err, store.ErrNotFound) || err == nil && m.TeamID != c.team() {
		return errNotFound("email")
	}
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, emailView(m))
	return nil
}

func emailView(m *store.Message) emailItem {
	it := emailItem{
		ID: m.ID, Status: m.Status, Reason: nullable(m.Reason), Waiting: validRaw(m.Waiting), Source: m.Source, From: m.From,
		Subject: nullable(m.Subject), Size: m.Size, SentFromEmail: nullable(m.SentFromEmail),
		Recipients: make([]recipientItem, 0, len(m.Recipients)),
		Attempts:   make([]attemptItem, 0, len(m.Attempts)),
		CreatedAt:  rfc3339(m.CreatedAt), UpdatedAt: rfc3339(m.UpdatedAt),
	}
	if m.State == store.StateQueued && !m.NextAttemptAt.IsZero() {
		it.NextAttemptAt = rfc3339p(&m.NextAttemptAt)
	}
	for _, r := range m.Recipients {
		it.Recipients = append(it.Recipients, recipientItem{
			Email: r.Address, Status: r.Status, Code: nonZero(r.Code), Reply: nullable(r.Reply),
			ProviderID: nullable(r.ProviderID),
		})
	}
	for _, a := range m.Attempts {
		it.Attempts = append(it.Attempts, attemptItem{
			Number: a.N, ProviderID: nullable(a.ProviderID), ProviderType: nullable(a.ProviderType),
			StartedAt: rfc3339(a.StartedAt), DurationMS: a.DurationMS, Status: a.Status,
			Class: nullable(a.Class), Code: nonZero(a.Code), Reply: nullable(a.Reply),
			UpstreamID: nullable(a.UpstreamID), Routing: validRaw(a.Routing),
		})
	}
	return it
}

func nonZero(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

// validRaw guards the envelope: a corrupt routing blob must not make the
// whole answer invalid JSON (RawMessage is copied verbatim).
func validRaw(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || !json.Valid(raw) {
		return nil
	}
	return raw
}
