package main

import (
	"context"
	"fmt"

	"github.com/smtpmux/smtpmux/internal/verp"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/bounce"
)

// verpSigner is the VERP token signer of the daemon's secret key: the
// scheduler mints return paths with it, the bounce listener checks them.
func verpSigner(secret string) *verp.Signer { return verp.New(verp.Key(secret)) }

// sesHook is the public SES notification endpoint (POST /hooks/ses/{id}),
// recording through the same Recorder shape as the bounce listener, so
// that SES bounces and complaints suppress, count and emit events alike.
func (d *daemon) sesHook(secret string, metrics *relay.Metrics) *bounce.SESHook {
	rec := bounce.NewRecorder(d.store, verpSigner(secret), d.hooks.Emit, metrics, nil)
	rec.OnFeedback = d.sched.CheckManagedHold
	return bounce.NewSESHook(bounce.SESHookConfig{ManagedTopicARN: d.cfg.file.Managed.SES.SNSTopicARN},
		d.store, rec, nil, d.log, nil)
}

// startBounces starts the [bounces] listener when one is configured.
func (d *daemon) startBounces(secret string, metrics *relay.Metrics) error {
	b := d.cfg.file.Bounces
	if b.Listen == "" {
		return nil
	}
	rec := bounce.NewRecorder(d.store, verpSigner(secret), d.hooks.Emit, metrics, nil)
	rec.OnFeedback = d.sched.CheckManagedHold
	l := bounce.NewListener(bounce.Config{Listen: b.Listen, Hostname: d.cfg.file.Hostname,
		MaxMessageBytes: b.MaxMessageBytes, MaxConnectionsPerIP: b.MaxConnectionsPerIP, Timeout: d.cfg.readTimeout,
		ProxyFrom: d.cfg.proxyFrom.bounces}, rec, d.log)
	if err := l.Start(); err != nil {
		return fmt.Errorf("bounces listen %s: %w", b.Listen, err)
	}
	d.bounces = l
	return nil
}

// stopBounces stops the bounce listener, if any, within ctx.
func (d *daemon) stopBounces(ctx context.Context) {
	if d.bounces != nil {
		if err := d.bounces.Shutdown(ctx); err != nil {
			d.log.Warn("bounce listener sessions cut at shutdown", "err", err)
		}
	}
}
