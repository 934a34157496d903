// Package webhook delivers smtpmux events (SPEC §8) to the HTTP endpoints
// teams subscribe with /api/v1/webhooks.
//
// An event is matched against the team's enabled webhooks and one delivery
// record per match is written to the store in a single durable transaction
// before Emit returns, so a crash after the event cannot lose it. A
// Dispatcher then POSTs each delivery as signed JSON (see Sign) and retries
// non-2xx answers and timeouts on a schedule spanning 24 hours.
//
// The package sits under admin because both sides of it are admin's: the
// webhook resources and their delivery log are Management API objects, and
// the payload is an HTTP contract. It imports store and the leaf
// internal/event, not relay: the relay emits the same event.Event through
// its EventSink, which cmd points at Dispatcher.Emit.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/smtpmux/smtpmux/internal/event"
)

// EventTypes lists the subscribable types in documentation order.
var EventTypes = []string{
	event.Delivered, event.Bounced, event.Rejected, event.Delayed, event.Clicked, event.Complained,
	event.ProviderStatusChanged, event.LimitRequestDecided, event.ManagedAccountHeld, event.DeliverabilityWarning,
}

// ValidType reports whether typ is a subscribable event type.
func ValidType(typ string) bool { return slices.Contains(EventTypes, typ) }

// eventData is the event's "data" object. Message events always carry the same
// keys (null when unknown), so receivers can rely on the shape.
func eventData(e event.Event) map[string]any {
	str := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	d := map[string]any{}
	switch e.Type {
	case event.Delivered, event.Bounced, event.Rejected, event.Delayed, event.Complained:
		rcpts := e.Recipients
		if rcpts == nil {
			rcpts = []string{}
		}
		var code any
		if e.Code != 0 {
			code = e.Code
		}
		d["message_id"], d["provider_id"], d["recipients"] = str(e.MessageID), str(e.ProviderID), rcpts
		d["smtp_code"], d["reply"], d["reason"] = code, str(e.Reply), str(e.Reason)
	case event.Clicked:
		var rcpt any
		if len(e.Recipients) > 0 {
			rcpt = e.Recipients[0]
		}
		d["message_id"], d["recipient"], d["url"] = str(e.MessageID), rcpt, str(e.URL)
	case event.ProviderStatusChanged:
		d["provider_id"], d["status"], d["reason"] = str(e.ProviderID), str(e.Status), str(e.Reason)
	case event.ManagedAccountHeld, event.DeliverabilityWarning:
		d["provider_id"], d["reason"] = str(e.ProviderID), str(e.Reason)
	}
	for k, v := range e.Extra {
		d[k] = v
	}
	return d
}

// envelope is the stored part of a delivery's body: everything but the
// per-attempt fields.
type envelope struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	TeamID     string          `json:"team_id"`
	OccurredAt string          `json:"occurred_at"`
	CreatedAt  string          `json:"created_at"`
	Data       json.RawMessage `json:"data"`
}

// wireBody is what is POSTed. Attempt and Timestamp change at each attempt
// and are inside the signed bytes, so a receiver that checks Timestamp
// against its clock rejects a captured request replayed later (see
// VerifyRequest). Field order is fixed by the struct: receivers sign the
// raw bytes anyway, but stable bytes make logs comparable.
type wireBody struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	TeamID     string          `json:"team_id"`
	OccurredAt string          `json:"occurred_at"`
	CreatedAt  string          `json:"created_at"`
	Attempt    int             `json:"attempt"`
	Timestamp  int64           `json:"timestamp"`
	Data       json.RawMessage `json:"data"`
}

const timeLayout = time.RFC3339Nano

// newEnvelope renders the stored part of an event.
func newEnvelope(id string, e event.Event, created time.Time) (json.RawMessage, error) {
	data, err := json.Marshal(eventData(e))
	if err != nil {
		return nil, err
	}
	at := e.At
	if at.IsZero() {
		at = created
	}
	return json.Marshal(envelope{ID: id, Type: e.Type, TeamID: e.TeamID, OccurredAt: at.UTC().Format(timeLayout),
		CreatedAt: created.UTC().Format(timeLayout), Data: data})
}

// wire renders the body of one attempt.
func wire(stored json.RawMessage, attempt int, now time.Time) ([]byte, error) {
	var env envelope
	if err := json.Unmarshal(stored, &env); err != nil {
		return nil, err
	}
	return json.Marshal(wireBody{ID: env.ID, Type: env.Type, TeamID: env.TeamID, OccurredAt: env.OccurredAt,
		CreatedAt: env.CreatedAt, Attempt: attempt, Timestamp: now.Unix(), Data: env.Data})
}

// Headers of every delivery. The event ID is stable across retries (dedupe
// on it); the attempt number starts at 1.
const (
	HeaderSignature  = "X-Smtpmux-Signature"
	HeaderTimestamp  = "X-Smtpmux-Timestamp"
	HeaderEventID    = "X-Smtpmux-Event-Id"
	HeaderEventType  = "X-Smtpmux-Event-Type"
	HeaderAttempt    = "X-Smtpmux-Delivery-Attempt"
	HeaderDeliveryID = "X-Smtpmux-Delivery-Id"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// NewSecret returns a fresh signing secret: the prefix and 64 hex digits
// (256 bits). The whole string, prefix included, is the HMAC key.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return SecretPrefix + hex.EncodeToString(b)
}

// Sign returns the X-Smtpmux-Signature value of body: "sha256=" and the hex
// HMAC-SHA256 of the raw body keyed with the secret. The body carries the
// attempt's Unix timestamp (also sent as X-Smtpmux-Timestamp), so the
// signature covers it: a receiver that verifies the signature and then
// rejects timestamps far from its clock is safe against replays of a
// captured request.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header is the signature of body under secret. The
// comparison takes constant time.
func Verify(secret string, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(secret, body)))
}

// Errors of VerifyRequest.
var (
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: timestamp outside the tolerance")
)

// VerifyRequest is what a Go receiver should run on a delivery before
// trusting it: the signature must match the raw body, the timestamp inside
// the signed body must equal the X-Smtpmux-Timestamp header, and it must be
// within tolerance of now (five minutes is a good choice; a retry is signed
// afresh at each attempt, so retries always pass).
func VerifyRequest(secret string, body []byte, h http.Header, now time.Time, tolerance time.Duration) error {
	if !Verify(secret, body, h.Get(HeaderSignature)) {
		return ErrBadSignature
	}
	var b struct {
		Timestamp int64 `json:"timestamp"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return ErrBadSignature
	}
	if strconv.FormatInt(b.Timestamp, 10) != h.Get(HeaderTimestamp) {
		return ErrBadSignature
	}
	d := now.Sub(time.Unix(b.Timestamp, 0))
	if d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}
