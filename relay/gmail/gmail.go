// Package gmail is the gmail_api provider: it sends through the Gmail API
// (users.messages.send) as a Google account connected with OAuth (SPEC
// §2, §7), with the gmail.send scope only.
//
// Gmail sends the raw RFC 5322 message it is given to the addresses in its
// To, Cc and Bcc headers; there is no envelope. So before sending, the
// message is fitted with mailapi.Prepare: From becomes the authorised
// address (display name kept), envelope recipients missing from the
// headers go in a Bcc field (Gmail delivers to it and strips it), and
// header addresses that are not envelope recipients are taken out. The
// body bytes are never touched.
package gmail

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/routing"
)

const api = "gmail"

// Defaults for the zero values of Config.
const (
	DefaultTimeout       = 2 * time.Minute
	DefaultMaxConcurrent = 4
	// DefaultUploadThreshold is the message size above which Send uses
	// the media upload endpoint instead of JSON "raw": Google caps the
	// JSON request at a few MB, the upload at 35 MB.
	DefaultUploadThreshold = 4 << 20
)

// Config describes one connected Gmail account.
type Config struct {
	// APIBaseURL is the Gmail API root; default oauth.GoogleAPIBaseURL.
	APIBaseURL string
	// TokenSource gives access tokens; normally an *oauth.Source (from
	// oauth.Connector.TokenSource), whose Invalidate lets Send recover
	// from an access token revoked early.
	TokenSource oauth2.TokenSource
	// Email is the authorised address (the provider's oauth_email): every
	// message is sent with it as From.
	Email string
	// HTTPClient makes the API calls; default a client without timeout
	// (Timeout and the caller's context bound each call).
	HTTPClient *http.Client
	// Timeout bounds one Send or Test.
	Timeout time.Duration
	// MaxConcurrent is how many calls may be in flight at once: Gmail
	// limits concurrent requests per user and answers 429 beyond.
	MaxConcurrent int
	// UploadThreshold is the size above which the media upload is used.
	UploadThreshold int
}

// Provider sends through one Gmail account. Safe for concurrent use.
type Provider struct {
	cfg Config
	sem chan struct{}
}

var (
	_ relay.Provider = (*Provider)(nil)
	_ relay.Tester   = (*Provider)(nil)
)

// New checks cfg and returns its provider.
func New(cfg Config) (*Provider, error) {
	base, err := mailapi.CheckAccount("gmail", cfg.TokenSource, cfg.Email, cfg.APIBaseURL, oauth.GoogleAPIBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.APIBaseURL = base
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.UploadThreshold <= 0 {
		cfg.UploadThreshold = DefaultUploadThreshold
	}
	return &Provider{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// Send sends body to env.To as the account. Result.UpstreamID is the
// Gmail message id. Gmail accepts or refuses the message as a whole, so
// Result.Refused is always empty.
func (p *Provider) Send(ctx context.Context, env relay.Envelope, body []byte) (*relay.Result, error) {
	msg, err := mailapi.Prepare(body, p.cfg.Email, env.To)
	if err != nil {
		return nil, mailapi.Refused(api, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if derr := p.acquire(ctx); derr != nil {
		return nil, derr
	}
	defer func() { <-p.sem }()
	if derr := env.BeforeData(); derr != nil {
		return nil, derr
	}
	resp, derr := mailapi.Call(ctx, p.cfg.HTTPClient, p.cfg.TokenSource, api, func(ctx context.Context) (*http.Request, error) {
		return p.sendRequest(ctx, msg)
	})
	if derr != nil {
		return nil, derr
	}
	if resp.Status/100 != 2 {
		return nil, classify(resp)
	}
	// The message resource: {"id","threadId","labelIds":["SENT"]}. A
	// 2xx means Gmail took the message even if the body is unreadable.
	var m struct {
		ID string `json:"id"`
	}
	json.Unmarshal(resp.Body, &m)
	return &relay.Result{UpstreamID: m.ID, Reply: "250 2.0.0 Gmail message " + m.ID + " sent"}, nil
}

// sendRequest is users.messages.send: the message base64url-encoded in
// the JSON "raw" field, or for large messages the media upload of the
// message as is.
func (p *Provider) sendRequest(ctx context.Context, msg []byte) (*http.Request, error) {
	if len(msg) > p.cfg.UploadThreshold {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			p.cfg.APIBaseURL+"/upload/gmail/v1/users/me/messages/send?uploadType=media", bytes.NewReader(msg))
		if err == nil {
			req.Header.Set("Content-Type", "message/rfc822")
		}
		return req, err
	}
	// base64url needs no JSON escaping, so the body is built directly
	// rather than through encoding/json, saving a copy of a large string.
	n := base64.URLEncoding.EncodedLen(len(msg))
	b := make([]byte, 0, n+10)
	b = append(b, `{"raw":"`...)
	b = base64.URLEncoding.AppendEncode(b, msg)
	b = append(b, `"}`...)
	return p.jsonRequest(ctx, b)
}

func (p *Provider) jsonRequest(ctx context.Context, b []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		p.cfg.APIBaseURL+"/gmail/v1/users/me/messages/send", bytes.NewReader(b))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

// Test checks the grant and the API without sending anything and returns
// the round trip time. users.getProfile would need a read scope the app
// deliberately does not ask for, so Test calls users.messages.send with
// no message: Gmail checks the token, the scope and that the API is
// enabled before it looks at the request, so a 400 for the missing
// message means everything a real send needs is in place.
func (p *Provider) Test(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	start := time.Now()
	resp, derr := mailapi.Call(ctx, p.cfg.HTTPClient, p.cfg.TokenSource, api, func(ctx context.Context) (*http.Request, error) {
		return p.jsonRequest(ctx, []byte(`{}`))
	})
	latency := time.Since(start)
	if derr != nil {
		return latency, derr
	}
	if resp.Status == http.StatusBadRequest || resp.Status/100 == 2 {
		return latency, nil
	}
	return latency, classify(resp)
}

// acquire waits for a free call slot within ctx. Running out of time
// here is local congestion, not the account's fault: Transient, so the
// breaker does not count it.
func (p *Provider) acquire(ctx context.Context) *relay.DeliveryError {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &relay.DeliveryError{
			Failure: routing.Failure{Phase: routing.PhaseConnect, Text: "gmail: no free call slot: " + ctx.Err().Error()},
			Class:   relay.ClassPtr(routing.Transient),
			Err:     ctx.Err(),
		}
	}
}
