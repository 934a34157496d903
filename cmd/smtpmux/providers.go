package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/smtpmux/smtpmux/internal/netpolicy"
	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/outbox"
	"github.com/smtpmux/smtpmux/relay/ses"
	smtpprov "github.com/smtpmux/smtpmux/relay/smtp"
	"github.com/smtpmux/smtpmux/routing"
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
var (
	errSESNoKeys   = errors.New("this SES provider has no access key of its own; add ses_access_key_id and ses_secret_access_key")
	errSESEndpoint = errors.New("ses_endpoint is not an Amazon SES endpoint; clear it or use https://email.<region>.amazonaws.com")
)

// providerTester runs POST /providers/{id}/test: a real connection and
// authentication against the upstream, nothing sent. A success is reported
// to recovered (the scheduler), which clears the provider's breaker and
// wakes the mail waiting for it.
type providerTester struct {
	reg       *relay.Registry
	recovered func(teamID, providerID string)
}

// testTimeout bounds a connection test; past it the result is "deferred".
const testTimeout = 20 * time.Second

func (t providerTester) TestProvider(ctx context.Context, p *store.Provider) (string, error) {
	msg, err := t.test(ctx, p)
	if err != nil {
		// The team reads the class of the failure, never the raw error.
		return testMessage(err, p.Type), err
	}
	if t.recovered != nil {
		t.recovered(p.TeamID, p.ID)
	}
	return msg, nil
}

func (t providerTester) test(ctx context.Context, p *store.Provider) (string, error) {
	prov, err := t.reg.Build(p)
	if err != nil {
		return "", err
	}
	if c, ok := prov.(relay.Closer); ok {
		defer c.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if d, ok := prov.(interface {
		TestDetail(context.Context) (time.Duration, string, error)
	}); ok {
		_, msg, err := d.TestDetail(ctx)
		if err != nil {
			return "", testFailure(err, p.Type)
		}
		return msg, nil
	}
	tester, ok := prov.(relay.Tester)
	if !ok {
		return "", fmt.Errorf("provider type %s cannot be tested", p.Type)
	}
	latency, err := tester.Test(ctx)
	if err != nil {
		return "", testFailure(err, p.Type)
	}
	return testSuccessMessage(p, latency), nil
}

// testSuccessMessage says what a successful test proved: a Custom SMTP
// provider without a username does not authenticate (the session goes
// straight from EHLO to QUIT), so it only "connected".
func testSuccessMessage(p *store.Provider, latency time.Duration) string {
	if p.Type == store.TypeSMTP && p.SMTPUsername == "" {
		return fmt.Sprintf("connected in %d ms (no authentication configured)", latency.Milliseconds())
	}
	return fmt.Sprintf("connected and authenticated in %d ms", latency.Milliseconds())
}

// deferredError marks a test whose answer was "not now" rather than "no":
// it ran out of time, or the upstream answered its opening with a 4xx
// (too many connections — the pool may hold all the account may open —,
// a busy or greylisting server). The API keeps the provider's status
// ("deferred") instead of calling it broken.
type deferredError struct{ error }

func (deferredError) Timeout() bool { return true }

func testFailure(err error, providerType string) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return deferredError{fmt.Errorf("timed out: %w", err)}
	}
	var de *relay.DeliveryError
	if errors.As(err, &de) && de.Classified() == routing.Connection && de.Failure.Code == 0 && de.Err != nil {
		if errors.Is(de.Err, context.DeadlineExceeded) {
			return deferredError{err}
		}
	}
	// Only an SMTP reply: other providers' codes are HTTP statuses (an SES
	// 403 is a bad key), and an SMTP 4xx the classifier reads as an auth
	// or quota problem is that, not "not now".
	if de != nil && providerType == store.TypeSMTP && de.Failure.Code >= 400 && de.Failure.Code < 500 &&
		de.Classified() == routing.Connection {
		return deferredError{err}
	}
	return err
}
