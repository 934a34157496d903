// Package outlook is the outlook_api provider: it sends through Microsoft
// Graph (POST /me/sendMail with MIME content) as an Outlook.com or
// Microsoft 365 mailbox connected with OAuth (delegated Mail.Send and
// offline_access; SPEC §2, §7).
//
// Graph sends the MIME message it is given to the addresses in its To, Cc
// and Bcc headers; there is no envelope. So before sending, the message
// is fitted with mailapi.Prepare exactly as for Gmail: From becomes the
// authorised address (display name kept), envelope recipients missing
// from the headers go in a Bcc field, and header addresses that are not
// envelope recipients are taken out. The body bytes are never touched.
// Graph saves the sent message to the mailbox's Sent Items.
package outlook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/routing"
)

const api = "outlook"

// Defaults for the zero values of Config.
const (
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxConcurrent is Exchange Online's limit of concurrent
	// requests per app and mailbox; beyond it Graph answers 429
	// MailboxConcurrency.
	DefaultMaxConcurrent = 4
)

// Config describes one connected Microsoft mailbox.
type Config struct {
	// APIBaseURL is the Graph v1.0 root; default oauth.MicrosoftAPIBaseURL.
	APIBaseURL string
	// TokenSource gives access tokens; normally an *oauth.Source, whose
	// Invalidate lets Send recover from an access token revoked early.
	TokenSource oauth2.TokenSource
	// Email is the authorised address (oauth_email): every message is
	// sent with it as From.
	Email string
	// HTTPClient makes the API calls; default a client without timeout
	// (Timeout and the caller's context bound each call).
	HTTPClient *http.Client
	// Timeout bounds one Send or Test.
	Timeout time.Duration
	// MaxConcurrent is how many calls may be in flight at once.
	MaxConcurrent int
}

// Provider sends through one Microsoft mailbox. Safe for concurrent use.
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
	base, err := mailapi.CheckAccount("outlook", cfg.TokenSource, cfg.Email, cfg.APIBaseURL, oauth.MicrosoftAPIBaseURL)
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
	return &Provider{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// Send sends body to env.To as the mailbox. Graph answers 202 with no
// message id, so Result.UpstreamID is Graph's request-id (what Microsoft
// support asks for), else the client-request-id sent. Graph accepts or
// refuses the message as a whole: Result.Refused is always empty.
//
// Graph limits a request to 4 MB, so messages over about 3 MB (before
// base64) are refused by Graph with 413 and fail permanently.
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
	payload := base64.StdEncoding.AppendEncode(nil, msg)
	clientID := newRequestID()
	if derr := env.BeforeData(); derr != nil {
		return nil, derr
	}
	resp, derr := mailapi.Call(ctx, p.cfg.HTTPClient, p.cfg.TokenSource, api, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.APIBaseURL+"/me/sendMail", bytes.NewReader(payload))
		if err == nil {
			// text/plain tells Graph the body is base64 MIME, not JSON.
			req.Header.Set("Content-Type", "text/plain")
			req.Header.Set("client-request-id", clientID)
			req.Header.Set("return-client-request-id", "true")
		}
		return req, err
	})
	if derr != nil {
		return nil, derr
	}
	switch {
	case resp.Status == http.StatusAccepted:
		id := resp.Header.Get("request-id")
		if id == "" {
			id = clientID
		}
		return &relay.Result{UpstreamID: id, Reply: "250 2.0.0 Graph accepted, request-id " + id}, nil
	case resp.Status/100 == 2:
		// sendMail answers 202 only. Other 2xx have been seen for
		// oversized MIME that was not sent; sending again could
		// duplicate, so the outcome is uncertain.
		text := fmt.Sprintf("%s: unexpected HTTP %d to sendMail: %s", api, resp.Status, mailapi.Snippet(resp.Body))
		return nil, &relay.DeliveryError{
			Failure: routing.Failure{Phase: routing.PhaseFinal, BodySent: true, Text: text},
			Class:   relay.ClassPtr(routing.Uncertain),
			Err:     errors.New(text),
		}
	}
	return nil, classify(resp)
}

// Test reads the signed-in user (GET /me, User.Read) and returns the
// round trip time. It fails with class Auth when the token belongs to
// another account than the one connected.
func (p *Provider) Test(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	start := time.Now()
	resp, derr := mailapi.Call(ctx, p.cfg.HTTPClient, p.cfg.TokenSource, api, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.APIBaseURL+"/me?$select=mail,userPrincipalName", nil)
		if err == nil {
			req.Header.Set("Accept", "application/json")
		}
		return req, err
	})
	latency := time.Since(start)
	if derr != nil {
		return latency, derr
	}
	if resp.Status != http.StatusOK {
		return latency, classify(resp)
	}
	var me struct {
		Mail string `json:"mail"`
		UPN  string `json:"userPrincipalName"`
	}
	json.Unmarshal(resp.Body, &me)
	if !strings.EqualFold(me.Mail, p.cfg.Email) && !strings.EqualFold(me.UPN, p.cfg.Email) {
		return latency, mailapi.Failed(api, resp.Status, mailapi.EnhancedCredentials,
			fmt.Sprintf("token is for %q, not the connected %q", me.UPN, p.cfg.Email))
	}
	return latency, nil
}

// acquire waits for a free call slot within ctx. Running out of time
// here is local congestion, not the mailbox's fault: Transient, so the
// breaker does not count it.
func (p *Provider) acquire(ctx context.Context) *relay.DeliveryError {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &relay.DeliveryError{
			Failure: routing.Failure{Phase: routing.PhaseConnect, Text: "outlook: no free call slot: " + ctx.Err().Error()},
			Class:   relay.ClassPtr(routing.Transient),
			Err:     ctx.Err(),
		}
	}
}

// newRequestID is a random UUID (version 4), the form Graph expects in
// client-request-id.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
