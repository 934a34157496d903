package mailapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth"
)

// maxResponse bounds how much of an API response is read: the answers
// that matter (ids, error objects) are small.
const maxResponse = 1 << 20

// Response is an API answer: its status and headers, and its body as far
// as it could be read (at most 1 MiB).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Invalidator is implemented by token sources that can drop a token the
// API refused (oauth.Source), so the next Token refreshes.
type Invalidator interface {
	Invalidate(stale *oauth2.Token)
}

var _ Invalidator = (*oauth.Source)(nil)

// Call makes one API request with a bearer token from ts. build must
// return a new request each time it is called (Call may send twice).
//
// When the API answers 401 to a token ts thought valid, Call invalidates
// it and tries once more with a fresh one: access tokens can die early
// (password change, admin action), and a 401 means nothing was sent, so
// the retry cannot duplicate. A second 401, or a refresh that fails with
// invalid_grant, is GrantRevoked.
//
// A *relay.DeliveryError comes back for token failures, for transport
// failures (class Connection before the request was fully written,
// Uncertain after) and for the 401s above; every other answer, whatever
// its status, comes back as a Response for the caller to interpret.
func Call(ctx context.Context, hc *http.Client, ts oauth2.TokenSource, api string,
	build func(context.Context) (*http.Request, error)) (*Response, *relay.DeliveryError) {
	for try := 0; ; try++ {
		tok, err := ts.Token()
		if err != nil {
			return nil, TokenFailure(api, err)
		}
		req, err := build(ctx)
		if err != nil {
			return nil, Refused(api, "building request: "+err.Error())
		}
		tok.SetAuthHeader(req)
		resp, derr := do(ctx, hc, req, api)
		if derr != nil {
			return nil, derr
		}
		if resp.Status != http.StatusUnauthorized {
			return resp, nil
		}
		inv, ok := ts.(Invalidator)
		if !ok || try > 0 {
			return nil, GrantRevoked(api, "access token refused after refresh (HTTP 401): "+Snippet(resp.Body), nil)
		}
		inv.Invalidate(tok)
	}
}

// do sends req and reads the whole response, telling apart failures
// before the request was written (nothing can have been delivered) from
// failures after it (the API may have sent the message).
func do(ctx context.Context, hc *http.Client, req *http.Request, api string) (*Response, *relay.DeliveryError) {
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := hc.Do(req)
	if err != nil {
		// net/http reports a keep-alive connection the server closed
		// while idle, just as the request went out, this way. The server
		// never read it; net/http only declines to retry a POST itself.
		idle := strings.Contains(err.Error(), "server closed idle connection")
		return nil, NetFailure(ctx, api, err, wrote.Load() && !idle)
	}
	defer resp.Body.Close()
	// A body cut short still leaves the status, which is what decides:
	// a 2xx means the API took the message even if its id got lost.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}
