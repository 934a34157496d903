package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/internal/provhealth"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// DetailTester is implemented by providers whose connection test has more
// to say than a latency (SES: the account's sending quota and state); a
// test prefers it to Tester.
type DetailTester interface {
	TestDetail(ctx context.Context) (latency time.Duration, message string, err error)
}

// SettingsError is a provider factory's refusal of a record's settings
// (the operator's policy forbids them), worded for the team: a connection
// test and status_reason show its text as is.
type SettingsError string

func (e SettingsError) Error() string { return string(e) }

// ProviderTester runs POST /providers/{id}/test: a real connection and
// authentication against the upstream, nothing sent.
type ProviderTester struct {
	Registry *Registry
	// Recovered, when set, hears of every success (the scheduler's
	// ProviderRecovered): a passed test clears the provider's breaker and
	// wakes the mail waiting for it.
	Recovered func(teamID, providerID string)
}

// testTimeout bounds a connection test; past it the result is deferred.
const testTimeout = 20 * time.Second

// TestProvider tests p's settings. A failure's message is its class in
// words (testMessage, deferredMessage), never the raw error.
func (t ProviderTester) TestProvider(ctx context.Context, p *store.Provider) provhealth.TestResult {
	msg, err := t.test(ctx, p)
	if err != nil {
		if deferred(err, p.Type) {
			return provhealth.TestResult{Outcome: provhealth.Deferred, Message: deferredMessage(err)}
		}
		return provhealth.TestResult{Outcome: provhealth.Failed, Message: testMessage(err, p.Type)}
	}
	if t.Recovered != nil {
		t.Recovered(p.TeamID, p.ID)
	}
	return provhealth.TestResult{Outcome: provhealth.OK, Message: msg}
}

func (t ProviderTester) test(ctx context.Context, p *store.Provider) (string, error) {
	prov, err := t.Registry.Build(p)
	if err != nil {
		return "", err
	}
	if c, ok := prov.(Closer); ok {
		defer c.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if d, ok := prov.(DetailTester); ok {
		_, msg, err := d.TestDetail(ctx)
		return msg, err
	}
	tester, ok := prov.(Tester)
	if !ok {
		return "", fmt.Errorf("provider type %s cannot be tested", p.Type)
	}
	latency, err := tester.Test(ctx)
	if err != nil {
		return "", err
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

// deferred reports whether a failed test's answer was "not now" rather
// than "no": it ran out of time, or an SMTP upstream answered its opening
// with a 4xx (too many connections — the delivery pool may hold all the
// account may open —, a busy or greylisting server). The API then keeps
// the provider's status instead of calling it broken.
func deferred(err error, providerType string) bool {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var de *DeliveryError
	if !errors.As(err, &de) || de.Classified() != routing.Connection {
		return false
	}
	// Only an SMTP reply: other providers' codes are HTTP statuses (an SES
	// 403 is a bad key), and an SMTP 4xx the classifier reads as an auth
	// or quota problem is that, not "not now".
	return providerType == store.TypeSMTP && de.Failure.Code >= 400 && de.Failure.Code < 500
}

// deferredMessage is what a deferred test tells the team: "TLS handshake
// failed" when the error speaks of TLS, else "connection failed". Unlike
// testMessage it names neither the upstream's reply nor the timeout; that
// is the API's answer as it stands (TestDeferredTestMessage), and saying
// more would be a change of the product, not of this code's shape.
func deferredMessage(err error) string {
	if strings.Contains(err.Error(), "tls:") {
		return "TLS handshake failed"
	}
	return "connection failed"
}
