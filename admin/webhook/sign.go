package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

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
