package admin

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/smtpmux/smtpmux/admin/webhook"
)

// initSending completes New for the Sending API, idempotency and webhooks.
func (s *Server) initSending() {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	s.boot = hex.EncodeToString(b)
	s.hooks = s.opts.Webhooks
	if s.hooks == nil {
		s.hooks = webhook.New(webhook.Options{Store: s.st, Sealer: s.opts.Sealer, Logger: s.log, Now: s.opts.Now,
			AllowPrivateTargets: s.opts.AllowPrivateWebhookTargets})
	}
}

// Webhooks returns the dispatcher the server queues webhook events with.
func (s *Server) Webhooks() *webhook.Dispatcher { return s.hooks }
