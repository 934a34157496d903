package ses

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/smithy-go"

	"github.com/smtpmux/smtpmux/relay"
)

// Provider sends through one SES account. It is safe for concurrent use:
// the SDK client is, and a Send keeps its state on its own stack.
type Provider struct {
	cfg    Config
	client *sesv2.Client
	// ownHTTP is the HTTP client New built, closed by Close; nil when the
	// caller supplied Config.HTTPClient and so owns its connections.
	ownHTTP *http.Client
}

// Compile-time guards: the capabilities relay and cmd look for.
var (
	_ relay.Provider = (*Provider)(nil)
	_ relay.Tester   = (*Provider)(nil)
	_ relay.Closer   = (*Provider)(nil)
)

// New validates cfg and builds the SES client. It does no network I/O;
// ctx only bounds reading the AWS shared configuration when the default
// credential chain is used. Whether the credentials work is Test's job.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg}
	hc := cfg.HTTPClient
	if hc == nil {
		// GetTransport returns a fresh transport with the SDK's defaults
		// (timeouts, HTTP/2, TLS 1.2+), so this provider owns its pool.
		bc := awshttp.NewBuildableClient()
		if cfg.DialControl != nil {
			bc = bc.WithDialerOptions(func(d *net.Dialer) { d.Control = cfg.DialControl })
		}
		hc = &http.Client{
			Transport: bc.GetTransport(),
			// A 307/308 would replay the POST body: another send.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		p.ownHTTP = hc
	}

	var creds aws.CredentialsProvider
	if cfg.AccessKeyID != "" {
		creds = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")
	} else {
		// Only the credential chain is taken from the shared
		// configuration; region, endpoint, retries and HTTP client stay
		// as configured here, so the environment cannot redirect or
		// re-shape sends behind the operator's back.
		ac, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.Region))
		if err != nil {
			return nil, fmt.Errorf("ses: loading the AWS default credential chain: %w", err)
		}
		if ac.Credentials == nil {
			return nil, errors.New("ses: the AWS default credential chain is empty")
		}
		creds = ac.Credentials
	}

	opts := sesv2.Options{
		Region:      cfg.Region,
		Credentials: credentialSource{creds},
		HTTPClient:  hc,
		Retryer:     newRetryer(),
		AppID:       "smtpmux",
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	p.client = sesv2.New(opts)
	return p, nil
}

// Config returns the normalised configuration (defaults filled in).
func (p *Provider) Config() Config { return p.cfg }

// Close releases idle connections of the HTTP client New built. The
// Provider must not be used afterwards.
func (p *Provider) Close() error {
	if p.ownHTTP != nil {
		p.ownHTTP.CloseIdleConnections()
	}
	return nil
}

// withTimeout applies Config.Timeout on top of the caller's deadline.
func (p *Provider) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.Timeout)
}

// credentialSource marks failures to obtain credentials, so that they read
// as a configuration fault (class Auth) rather than a network error: no
// request was made, and none will succeed until the operator fixes it.
type credentialSource struct{ aws.CredentialsProvider }

// Retrieve implements aws.CredentialsProvider.
func (c credentialSource) Retrieve(ctx context.Context) (aws.Credentials, error) {
	v, err := c.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return v, &credentialsError{err}
	}
	return v, nil
}

// credentialsError is a failure of the credential chain.
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return "ses: no usable AWS credentials: " + e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// Retry policy. The SDK's standard retryer would repeat a SendEmail after
// a connection reset, a timeout or a 5xx — cases where SES may already
// have accepted the message — and so could deliver it twice. Setting
// RetryMaxAttempts to 1 would be safe but would turn every momentary
// "Maximum sending rate exceeded" into a quota block of the provider (its
// breaker pulls it for hours). So the retryer below repeats a call only
// when SES answered and the answer proves it did not take the request: a
// per-second throttle, or a signature rejected for clock skew (which the
// SDK then corrects). Everything else, including every failure without a
// response, is returned at once for relay to classify and schedule.
const (
	throttleAttempts = 3                      // first try plus two retries
	throttleBackoff  = 250 * time.Millisecond // doubled per retry, full jitter
	// minRetryBudget is the time that must be left to start a retry. A
	// retry cut off by the deadline after its body went out is
	// "uncertain" and never resent, so near the deadline the throttle
	// itself is the better outcome: relay retries that later.
	minRetryBudget = 2 * time.Second
)

// errNoRetryBudget stops a throttle retry for lack of time.
var errNoRetryBudget = errors.New("ses: too little time left to retry the throttled request")

func newRetryer() aws.Retryer {
	return sendRetryer{retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = throttleAttempts
		o.Retryables = []retry.IsErrorRetryable{
			retry.NoRetryCanceledError{},
			retry.IsErrorRetryableFunc(retryableRejection),
		}
		// The token bucket guards against retry storms of generic
		// retries; with only short, bounded throttle retries it would just
		// make behaviour depend on history.
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			return rand.N(throttleBackoff << max(attempt-1, 0)), nil
		})
	})}
}

// sendRetryer adds the per-call part of the policy. GetRetryToken is the
// one retryer hook that sees both the error and the call's context, right
// before the backoff sleep: it declines a retry when the deadline is near,
// and notes in the call's attemptTrace the refusal it is about to retry.
type sendRetryer struct{ *retry.Standard }

// The retry middleware only uses GetAttemptToken when the retryer has it.
var _ aws.RetryerV2 = sendRetryer{}

// GetRetryToken implements aws.Retryer.
func (r sendRetryer) GetRetryToken(ctx context.Context, err error) (func(error) error, error) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < minRetryBudget {
		return nil, errNoRetryBudget
	}
	if t, ok := ctx.Value(traceKey{}).(*attemptTrace); ok {
		t.rejected.Store(&err)
	}
	return r.Standard.GetRetryToken(ctx, err)
}

// retryableRejection decides a retry (see the policy above).
func retryableRejection(err error) aws.Ternary {
	if httpStatus(err) == 0 {
		return aws.FalseTernary // no answer: SES may have the message
	}
	var skew interface{ RetryableError() bool }
	if errors.As(err, &skew) && skew.RetryableError() {
		// Only the SDK's clock-skew wrapper implements this; it is set
		// when a signature was refused because our clock is off.
		return aws.TrueTernary
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && isRateThrottle(httpStatus(err), ae.ErrorCode(), ae.ErrorMessage()) {
		return aws.TrueTernary
	}
	return aws.FalseTernary
}

// isRateThrottle is a per-second rate refusal, worth a retry within the
// same attempt. A daily quota refusal is not: it lasts hours.
func isRateThrottle(status int, code, msg string) bool {
	if strings.Contains(strings.ToLower(msg), "daily") {
		return false
	}
	switch code {
	case "TooManyRequestsException", "Throttling", "ThrottlingException":
		return true
	}
	return status == http.StatusTooManyRequests
}
