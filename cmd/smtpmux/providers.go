package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/outbox"
	"github.com/smtpmux/smtpmux/relay/ses"
	smtpprov "github.com/smtpmux/smtpmux/relay/smtp"
	"github.com/smtpmux/smtpmux/store"
)

// registerProviders installs one factory per provider type this build
// supports; relay never imports the provider packages itself.
//
// Teams' providers connect through the address policy (internal/netpolicy)
// unless the operator set [providers] allow_private_hosts: the API already
// refused internal hosts, and the dialer refuses again after DNS, which
// also catches records stored before the policy or under the opt-in.
func registerProviders(reg *relay.Registry, cfg *config, upstreamTLS *tls.Config, log *slog.Logger) error {
	pol := cfg.file.Providers
	reg.Register(store.TypeSMTP, func(p *store.Provider, password string) (relay.Provider, error) {
		return smtpprov.New(smtpprov.Config{
			Host: p.SMTPHost, Port: p.SMTPPort, Protocol: p.SMTPProtocol,
			Username: p.SMTPUsername, Password: password, HeloName: cfg.file.Hostname,
			TLSConfig: upstreamTLS, MaxConns: cfg.file.Delivery.ConnsPerProvider,
			Dial:   netpolicy.DialFunc(smtpprov.DefaultDialTimeout, pol.AllowPrivateHosts),
			Logger: log.With("provider", p.ID, "team", p.TeamID),
		})
	})
	reg.Register(store.TypeSES, func(p *store.Provider, secret string) (relay.Provider, error) {
		c := ses.Config{Region: p.SESRegion, AccessKeyID: p.SESAccessKeyID,
			SecretAccessKey: secret, Endpoint: p.SESEndpoint, ConfigurationSet: p.SESConfigurationSet}
		// Records stored before the policy: refused here too, so that
		// nothing a team configured signs with the daemon's credentials
		// or talks to an endpoint of its choosing.
		if c.AccessKeyID == "" && !pol.SESDefaultCredentials {
			return nil, errSESNoKeys
		}
		if !pol.AllowPrivateHosts {
			if c.Endpoint != "" && !netpolicy.AWSSESEndpoint(c.Endpoint) {
				return nil, errSESEndpoint
			}
			c.DialControl = netpolicy.Control
		}
		return ses.New(context.Background(), c)
	})
	switch cfg.file.Managed.Backend {
	case "outbox":
		ob, err := outbox.New(cfg.file.Managed.OutboxDir)
		if err != nil {
			return fmt.Errorf("managed.outbox_dir: %w", err)
		}
		reg.Register(store.TypeManagedSES, func(*store.Provider, string) (relay.Provider, error) { return ob, nil })
	case "ses":
		// One SES client for every team's managed account: they all send
		// through the operator's account.
		ms := cfg.file.Managed.SES
		prov, err := ses.New(context.Background(), ses.Config{Region: ms.Region, Endpoint: ms.Endpoint,
			ConfigurationSet: ms.ConfigurationSet, AccessKeyID: ms.AccessKeyID, SecretAccessKey: ms.SecretAccessKey})
		if err != nil {
			return fmt.Errorf("managed.ses: %w", err)
		}
		reg.Register(store.TypeManagedSES, func(*store.Provider, string) (relay.Provider, error) { return prov, nil })
	}
	return nil
}

// Refusals of a team's SES record by the policy; their text is shown to
// the team (status_reason, test result).
const (
	errSESNoKeys   relay.SettingsError = "this SES provider has no access key of its own; add ses_access_key_id and ses_secret_access_key"
	errSESEndpoint relay.SettingsError = "ses_endpoint is not an Amazon SES endpoint; clear it or use https://email.<region>.amazonaws.com"
)
