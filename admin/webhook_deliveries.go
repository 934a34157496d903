package admin

import (
	"encoding/base64"
	"encoding/json"

	"github.com/smtpmux/smtpmux/store"
)

// deliveryItem is one line of GET /webhooks/{id}/deliveries: what was sent
// (the event, as the receiver got it minus the per-attempt fields) and what
// each attempt got back.
type deliveryItem struct {
	ID            string            `json:"id"`
	EventID       string            `json:"event_id"`
	EventType     string            `json:"event_type"`
	Status        string            `json:"status"` // pending | succeeded | failed
	Attempts      int               `json:"attempts"`
	NextAttemptAt *string           `json:"next_attempt_at"`
	LastStatus    *int              `json:"last_status_code"`
	LastError     *string           `json:"last_error"`
	AttemptLog    []deliveryAttempt `json:"attempt_log"`
	Event         json.RawMessage   `json:"event"`
	CreatedAt     string            `json:"created_at"`
	CompletedAt   *string           `json:"completed_at"`
}

type deliveryAttempt struct {
	At         string  `json:"at"`
	StatusCode *int    `json:"status_code"`
	Error      *string `json:"error"`
	DurationMS int64   `json:"duration_ms"`
}

func deliveryView(d *store.WebhookDelivery) deliveryItem {
	it := deliveryItem{ID: d.ID, EventID: d.EventID, EventType: d.EventType, Status: d.Status,
		Attempts: len(d.Attempts), AttemptLog: make([]deliveryAttempt, 0, len(d.Attempts)),
		Event: validRaw(d.Event), CreatedAt: rfc3339(d.CreatedAt), CompletedAt: rfc3339p(d.CompletedAt)}
	if d.Status == store.DeliveryPending {
		it.NextAttemptAt = rfc3339p(&d.NextAttemptAt)
	}
	for _, a := range d.Attempts {
		it.AttemptLog = append(it.AttemptLog, deliveryAttempt{At: rfc3339(a.At), StatusCode: nonZero(a.StatusCode),
			Error: nullable(a.Error), DurationMS: a.DurationMS})
	}
	if n := len(d.Attempts); n > 0 {
		last := it.AttemptLog[n-1]
		it.LastStatus, it.LastError = last.StatusCode, last.Error
	}
	return it
}

// deliveryStatuses are the values of ?status=.
var deliveryStatuses = []string{store.DeliveryPending, store.DeliverySucceeded, store.DeliveryFailed}

// listDeliveries is GET /webhooks/{id}/deliveries: newest first, cursor
// pagination, optional ?status=. Deliveries are kept 7 days.
func (s *Server) listDeliveries(c *call) error {
	w, err := s.loadWebhook(c)
	if err != nil {
		return err
	}
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	status := c.r.URL.Query().Get("status")
	if status != "" && !containsStr(deliveryStatuses, status) {
		return errInvalidParam("status", "status must be one of pending, succeeded, failed")
	}
	ds, more, err := s.st.WebhookDeliveries(w.ID, pg.after, status, pg.limit)
	if err != nil {
		return err
	}
	out := make([]deliveryItem, 0, len(ds))
	for _, d := range ds {
		out = append(out, deliveryView(d))
	}
	var pag pagination
	if more && len(ds) > 0 {
		next := base64.RawURLEncoding.EncodeToString([]byte(ds[len(ds)-1].ID))
		pag = pagination{HasMore: true, NextCursor: &next}
	}
	c.list(out, pag)
	return nil
}
