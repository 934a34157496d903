package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/store"
)

// Webhook permissions (the catalogue in auth.go lists the resource).
// Rotating the secret and sending a test change or use the webhook, so
// they need webhook.update.
const (
	permWebhookRead   = "webhook.read"
	permWebhookCreate = "webhook.create"
	permWebhookUpdate = "webhook.update"
	permWebhookDelete = "webhook.delete"
)

// Webhook bounds.
const (
	maxWebhooksPerTeam = 25
	maxWebhookName     = 100
	secretShownChars   = 10 // "whsec_" and four hex digits
)

// webhookItem is the public shape of a webhook. The secret is not part of
// it: only create and rotate-secret return it, once.
type webhookItem struct {
	ID              string   `json:"id"`
	Name            *string  `json:"name"`
	URL             string   `json:"url"`
	EventTypes      []string `json:"event_types"`
	Enabled         bool     `json:"enabled"`
	Failing         bool     `json:"failing"`
	SecretPrefix    string   `json:"secret_prefix"`
	SecretRotatedAt *string  `json:"secret_rotated_at"`
	CreatedAt       string   `json:"created_at"`
	UpdatedAt       string   `json:"updated_at"`
}

// webhookWithSecret is the create and rotate answer.
type webhookWithSecret struct {
	webhookItem
	Secret string `json:"secret"`
}

func webhookView(w *store.Webhook) webhookItem {
	return webhookItem{ID: w.ID, Name: nullable(w.Name), URL: w.URL, EventTypes: nonNil(w.EventTypes),
		Enabled: w.Enabled, Failing: w.Failing, SecretPrefix: w.SecretPrefix,
		SecretRotatedAt: rfc3339p(w.SecretRotatedAt), CreatedAt: rfc3339(w.CreatedAt), UpdatedAt: rfc3339(w.UpdatedAt)}
}

// webhookInput is a decoded webhook body.
type webhookInput struct {
	name, url  httpapi.Opt[string]
	eventTypes httpapi.Opt[[]string]
	enabled    httpapi.Opt[bool]
}

func decodeWebhook(o *httpapi.Object) (*webhookInput, error) {
	if err := o.Allow("name", "url", "event_types", "enabled"); err != nil {
		return nil, err
	}
	in := &webhookInput{}
	var err error
	if in.name, err = httpapi.Field[string](o, "name"); err != nil {
		return nil, err
	}
	if in.url, err = httpapi.Field[string](o, "url"); err != nil {
		return nil, err
	}
	if in.eventTypes, err = httpapi.Field[[]string](o, "event_types"); err != nil {
		return nil, err
	}
	if in.enabled, err = httpapi.Field[bool](o, "enabled"); err != nil {
		return nil, err
	}
	return in, nil
}

// Webhooks returns the dispatcher the server queues webhook events with.
func (s *Server) Webhooks() *webhook.Dispatcher { return s.hooks }

// applyWebhook validates in onto w; create requires url and event_types.
// Re-enabling clears the failing flag (the team says the endpoint is
// fixed). Deterministic: it may run in a store function more than once.
func (s *Server) applyWebhook(in *webhookInput, w *store.Webhook, v *httpapi.Validator, create bool) {
	if in.name.Set {
		w.Name = ""
		if !in.name.Null {
			w.Name = httpapi.CheckText(v, "name", in.name.V, maxWebhookName)
		}
	}
	switch {
	case in.url.Set && !in.url.Null && in.url.V != "":
		if _, problem := webhook.CheckURL(in.url.V, s.opts.Webhooks.AllowPrivateTargets); problem != "" {
			v.Add("url", httpapi.FieldInvalid, problem)
		} else {
			w.URL = in.url.V
		}
	case in.url.Set || create:
		v.Add("url", httpapi.FieldRequired, "url is required: the http(s) endpoint events are POSTed to")
	}
	switch {
	case in.eventTypes.Set && !in.eventTypes.Null && len(in.eventTypes.V) > 0:
		var types []string
		for i, t := range in.eventTypes.V {
			if !webhook.ValidType(t) {
				v.Add("event_types["+strconv.Itoa(i)+"]", httpapi.FieldNotSupported, "unknown event type "+strconv.Quote(t)+
					"; one of "+joinQuoted(webhook.EventTypes))
			} else if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		w.EventTypes = types
	case in.eventTypes.Set || create:
		v.Add("event_types", httpapi.FieldRequired, "event_types must list at least one of "+joinQuoted(webhook.EventTypes))
	}
	if in.enabled.Set && !in.enabled.Null {
		if in.enabled.V && !w.Enabled {
			w.Failing = false
		}
		w.Enabled = in.enabled.V
	} else if in.enabled.Set {
		v.Add("enabled", httpapi.FieldInvalid, "enabled must be true or false")
	}
}

func joinQuoted(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(x)
	}
	return out
}

// newWebhookSecret returns a fresh secret and its sealed form.
func (s *Server) newWebhookSecret() (secret string, sealed []byte) {
	secret = webhook.NewSecret()
	return secret, s.opts.Sealer.Seal(secret)
}

func (s *Server) createWebhook(c *call) error {
	o, err := httpapi.ReadBody(c.r)
	if err != nil {
		return err
	}
	in, err := decodeWebhook(o)
	if err != nil {
		return err
	}
	now := s.now()
	w := &store.Webhook{ID: store.NewID(store.PrefixWebhook), TeamID: c.team(), Enabled: true, CreatedAt: now, UpdatedAt: now}
	v := &httpapi.Validator{}
	s.applyWebhook(in, w, v, true)
	if err := v.Err(); err != nil {
		return err
	}
	secret, sealed := s.newWebhookSecret()
	w.SecretSealed, w.SecretPrefix = sealed, secret[:secretShownChars]
	switch err := s.st.CreateWebhook(w, maxWebhooksPerTeam); {
	case errors.Is(err, store.ErrLimit):
		return httpapi.ErrLimitExceeded("a team may have at most " + strconv.Itoa(maxWebhooksPerTeam) + " webhooks")
	case err != nil:
		return err
	}
	s.hooks.Invalidate()
	s.log.Info("webhook created", "request_id", c.reqID, "webhook", w.ID, "team", w.TeamID)
	c.w.Header().Set("Location", "/api/v1/webhooks/"+w.ID)
	c.w.Header().Set("ETag", etag(w.Version))
	c.ok(http.StatusCreated, webhookWithSecret{webhookItem: webhookView(w), Secret: secret})
	return nil
}

func (s *Server) listWebhooks(c *call) error {
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	all, err := s.st.Webhooks(c.team())
	if err != nil {
		return err
	}
	items, pag := paginate(all, func(w *store.Webhook) string { return w.ID }, pg)
	out := make([]webhookItem, 0, len(items))
	for _, w := range items {
		out = append(out, webhookView(w))
	}
	c.list(out, pag)
	return nil
}

// patchWebhook changes url, event types and enabled (see patch).
func (s *Server) patchWebhook(c *call) error {
	return patch(c, s.res.webhooks, decodeWebhook, func(cur *store.Webhook, ver int64, in *webhookInput) (*store.Webhook, error) {
		now := s.now()
		w, err := s.st.UpdateWebhook(c.team(), cur.ID, ver, func(w *store.Webhook) error {
			v := &httpapi.Validator{}
			s.applyWebhook(in, w, v, false)
			if err := v.Err(); err != nil {
				return err
			}
			w.UpdatedAt = now
			return nil
		})
		if err == nil {
			s.hooks.Invalidate()
		}
		return w, err
	})
}

// rotateWebhookSecret replaces the signing secret. The old one stops
// working at once: the next attempt of every queued delivery is signed
// with the new one.
func (s *Server) rotateWebhookSecret(c *call) error {
	cur, err := s.res.webhooks.load(c)
	if err != nil {
		return err
	}
	secret, sealed := s.newWebhookSecret()
	now := s.now()
	w, err := s.st.UpdateWebhook(c.team(), cur.ID, 0, func(w *store.Webhook) error {
		w.SecretSealed, w.SecretPrefix, w.SecretRotatedAt, w.UpdatedAt = sealed, secret[:secretShownChars], &now, now
		return nil
	})
	if err != nil {
		return storeErr(err, "webhook")
	}
	s.hooks.Invalidate()
	s.log.Info("webhook secret rotated", "request_id", c.reqID, "webhook", w.ID)
	c.w.Header().Set("ETag", etag(w.Version))
	c.ok(http.StatusOK, webhookWithSecret{webhookItem: webhookView(w), Secret: secret})
	return nil
}

// testWebhook queues a synthetic smtpmux.test event for this webhook only
// (whatever its event types) and answers with its IDs; the outcome shows in
// GET /webhooks/{id}/deliveries.
func (s *Server) testWebhook(c *call) error {
	w, err := s.res.webhooks.load(c)
	if err != nil {
		return err
	}
	eventID, deliveryID, err := s.hooks.SendTest(w)
	if err != nil {
		return err
	}
	c.ok(http.StatusAccepted, map[string]string{"event_id": eventID, "delivery_id": deliveryID, "status": "queued"})
	return nil
}

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
	w, err := s.res.webhooks.load(c)
	if err != nil {
		return err
	}
	pg, err := parsePage(c.r)
	if err != nil {
		return err
	}
	status := c.r.URL.Query().Get("status")
	if status != "" && !containsStr(deliveryStatuses, status) {
		return httpapi.ErrInvalidParam("status", "status must be one of pending, succeeded, failed")
	}
	ds, more, err := s.st.WebhookDeliveries(w.ID, pg.after, status, pg.limit)
	if err != nil {
		return err
	}
	out := make([]deliveryItem, 0, len(ds))
	for _, d := range ds {
		out = append(out, deliveryView(d))
	}
	var pag httpapi.Pagination
	if more && len(ds) > 0 {
		next := base64.RawURLEncoding.EncodeToString([]byte(ds[len(ds)-1].ID))
		pag = httpapi.Pagination{HasMore: true, NextCursor: &next}
	}
	c.list(out, pag)
	return nil
}
