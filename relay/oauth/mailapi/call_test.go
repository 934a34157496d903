package mailapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth"
	"github.com/smtpmux/smtpmux/routing"
)

// rawPeer is an HTTP/1.1 "server" on 127.0.0.1 whose behaviour per
// connection is scripted, for the failures httptest cannot produce.
func rawPeer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return "http://" + ln.Addr().String()
}

// readRequest consumes one whole request from c.
func readRequest(c net.Conn) {
	if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
		io.Copy(io.Discard, req.Body)
	}
}

// staticSource hands out one token; it cannot refresh.
type staticSource struct{ tok *oauth2.Token }

func (s staticSource) Token() (*oauth2.Token, error) { return s.tok, nil }

// failingSource fails every Token call with err.
type failingSource struct{ err error }

func (s failingSource) Token() (*oauth2.Token, error) { return nil, s.err }

func post(base string, body []byte) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodPost, base+"/send", bytes.NewReader(body))
	}
}

func TestCallFailures(t *testing.T) {
	tok := staticSource{&oauth2.Token{AccessToken: "at"}}
	closed := rawPeer(t, func(net.Conn) {})
	tests := []struct {
		name    string
		base    func() string
		ts      oauth2.TokenSource
		body    []byte
		timeout time.Duration
		// cancelOnRead: the peer reads the request, then the caller gives
		// up, like a deadline expiring while waiting for the answer.
		cancelOnRead bool
		class        routing.Class
		bodySent     bool
		revoked      bool
	}{
		{name: "connection refused", class: routing.Connection,
			base: func() string {
				ln, _ := net.Listen("tcp", "127.0.0.1:0")
				ln.Close()
				return "http://" + ln.Addr().String()
			}},
		{name: "dropped after the request was read", class: routing.Uncertain, bodySent: true,
			base: func() string { return rawPeer(t, readRequest) }},
		{name: "given up after the request was read", class: routing.Uncertain, bodySent: true, cancelOnRead: true},
		{name: "deadline while the body is still going out", class: routing.Connection, timeout: 50 * time.Millisecond,
			body: make([]byte, 64<<20), base: func() string {
				return rawPeer(t, func(net.Conn) { <-t.Context().Done() })
			}},
		{name: "401 without a way to refresh", class: routing.Auth, revoked: true,
			base: func() string {
				return rawPeer(t, func(c net.Conn) {
					readRequest(c)
					io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				})
			}},
		{name: "grant revoked at refresh", class: routing.Auth, revoked: true,
			ts: failingSource{oauth.ErrGrantRevoked}, base: func() string { return closed }},
		{name: "client rejected", class: routing.Auth,
			ts: failingSource{oauth.ErrClientRejected}, base: func() string { return closed }},
		{name: "token endpoint down", class: routing.Connection,
			ts: failingSource{errors.New("dial tcp: connection refused")}, base: func() string { return closed }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			if tt.cancelOnRead {
				tt.base = func() string {
					return rawPeer(t, func(c net.Conn) { readRequest(c); cancel(); <-t.Context().Done() })
				}
			}
			ts := tt.ts
			if ts == nil {
				ts = tok
			}
			body := tt.body
			if body == nil {
				body = []byte(`{"raw":"x"}`)
			}
			resp, derr := Call(ctx, &http.Client{}, ts, "test", post(tt.base(), body))
			if derr == nil {
				t.Fatalf("got HTTP %d, want a failure", resp.Status)
			}
			if got := derr.Classified(); got != tt.class || derr.Failure.BodySent != tt.bodySent {
				t.Fatalf("class %v bodySent %v (%v), want %v %v", got, derr.Failure.BodySent, derr, tt.class, tt.bodySent)
			}
			if IsGrantRevoked(derr) != tt.revoked {
				t.Fatalf("revoked marker %v in %q", !tt.revoked, derr.Failure.Text)
			}
			var de *relay.DeliveryError
			if !errors.As(error(derr), &de) {
				t.Fatal("not a DeliveryError")
			}
		})
	}
}

// TestFailedMapsIntoRoutingTable: each enhanced code a provider maps an
// API error to reads back, through routing's table, as what it names,
// whatever the HTTP status; and the status stays in the text.
func TestFailedMapsIntoRoutingTable(t *testing.T) {
	for enhanced, c := range map[string]routing.Class{
		EnhancedQuota: routing.Quota, EnhancedCredentials: routing.Auth, EnhancedAccount: routing.Auth,
		EnhancedRecipient: routing.Permanent, EnhancedTooBig: routing.Permanent, EnhancedInvalid: routing.Permanent,
	} {
		for _, st := range []int{400, 403, 413, 429, 503} {
			de := Failed("test", st, enhanced, "x")
			if got := de.Classified(); got != c {
				t.Errorf("%s at HTTP %d classifies as %v, want %v", enhanced, st, got, c)
			}
			if de.Failure.BodySent || !strings.Contains(de.Failure.Text, "HTTP ") {
				t.Errorf("failure %+v: an answered request sent nothing, and the status belongs in the text", de.Failure)
			}
		}
	}
}
