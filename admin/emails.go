package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
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
	// FailureReportID is the failure report sent for this message
	// (relay/failreports.go), or null.
	FailureReportID *string `json:"failure_report_id"`
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
	// Feedback lists the bounces and complaints recorded against the
	// recipient, each with its source (smtp, dsn, arf).
	Feedback []feedbackItem `json:"feedback"`
}

// feedbackItem is one bounce or complaint of a recipient.
type feedbackItem struct {
	Kind       string  `json:"kind"`
	Type       *string `json:"type"`
	Source     string  `json:"source"`
	Status     *string `json:"status"`
	Diagnostic *string `json:"diagnostic"`
	At         string  `json:"at"`
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
	// Routing is the routing explanation recorded with the pick, whole
	// (expandRouting).
	Routing json.RawMessage `json:"routing"`
}

func (s *Server) getEmail(c *call) error {
	id, ok := c.pathID(store.PrefixMessage)
	if !ok {
		return httpapi.ErrNotFound("email")
	}
	m, err := s.st.Message(id)
	if errors.Is(err, store.ErrNotFound) {
		// Cluster mode: accepted on another node, which holds it.
		if handled, err := s.forwardEmail(c, id); handled {
			return err
		}
	}
	if errors.Is(err, store.ErrNotFound) || err == nil && m.TeamID != c.team() {
		return httpapi.ErrNotFound("email")
	}
	if err != nil {
		return err
	}
	c.ok(http.StatusOK, s.emailView(m))
	return nil
}

func (s *Server) emailView(m *store.Message) emailItem {
	sets := map[string][]routing.Weighted{}
	it := emailItem{
		ID: m.ID, Status: m.Status, Reason: nullable(m.Reason), Waiting: s.expandRouting(m.TeamID, m.Waiting, sets), Source: m.Source, From: m.From,
		Subject: nullable(m.Subject), Size: m.Size, SentFromEmail: nullable(m.SentFromEmail),
		FailureReportID: nullable(m.FailureReportID),
		Recipients:      make([]recipientItem, 0, len(m.Recipients)),
		Attempts:        make([]attemptItem, 0, len(m.Attempts)),
		CreatedAt:       rfc3339(m.CreatedAt), UpdatedAt: rfc3339(m.UpdatedAt),
	}
	if m.State == store.StateQueued && !m.NextAttemptAt.IsZero() {
		it.NextAttemptAt = rfc3339p(&m.NextAttemptAt)
	}
	for _, r := range m.Recipients {
		it.Recipients = append(it.Recipients, recipientItem{
			Email: r.Address, Status: r.Status, Code: nonZero(r.Code), Reply: nullable(r.Reply),
			ProviderID: nullable(r.ProviderID), Feedback: feedbackView(r.Feedback),
		})
	}
	for _, a := range m.Attempts {
		it.Attempts = append(it.Attempts, attemptItem{
			Number: a.N, ProviderID: nullable(a.ProviderID), ProviderType: nullable(a.ProviderType),
			StartedAt: rfc3339(a.StartedAt), DurationMS: a.DurationMS, Status: a.Status,
			Class: nullable(a.Class), Code: nonZero(a.Code), Reply: nullable(a.Reply),
			UpstreamID: nullable(a.UpstreamID), Routing: s.expandRouting(m.TeamID, a.Routing, sets),
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

// expandRouting returns a routing explanation as the API shows it. An
// attempt stores its explanation by reference to the candidate set it was
// decided over (routing.Stored, relay/routeset.go), which is joined here;
// sets caches the sets read for one answer. One whose set retention
// already dropped stays in its stored form (the decision, the pick and
// the exclusions, without the in-scope list), and older records that
// hold the whole explanation pass through.
func (s *Server) expandRouting(teamID string, raw json.RawMessage, sets map[string][]routing.Weighted) json.RawMessage {
	raw = validRaw(raw)
	var st routing.Stored
	if raw == nil || json.Unmarshal(raw, &st) != nil || st.Set == "" {
		return raw
	}
	set, ok := sets[st.Set]
	if !ok {
		body, err := s.st.RouteSet(teamID, st.Set)
		if err == nil && json.Unmarshal(body, &set) != nil {
			err = errors.New("undecodable")
		}
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				s.log.Warn("reading a routing set failed", "team", teamID, "set", st.Set, "err", err)
			}
			return raw
		}
		sets[st.Set] = set
	}
	out, err := json.Marshal(routing.Expand(st.ScopeType, set, st.Decision))
	if err != nil {
		return raw
	}
	return out
}

// validRaw guards the envelope: a corrupt routing blob must not make the
// whole answer invalid JSON (RawMessage is copied verbatim).
func validRaw(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || !json.Valid(raw) {
		return nil
	}
	return raw
}

func feedbackView(fs []store.Feedback) []feedbackItem {
	out := make([]feedbackItem, 0, len(fs))
	for _, f := range fs {
		out = append(out, feedbackItem{Kind: f.Kind, Type: nullable(f.Type), Source: f.Source,
			Status: nullable(f.Status), Diagnostic: nullable(f.Diagnostic), At: rfc3339(f.At)})
	}
	return out
}
