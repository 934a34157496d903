package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// failGuard bounds waits that must end promptly; it is a guard against a
// hang, not a timing assertion (before the fix these waits took minutes).
const failGuard = 30 * time.Second

// dialFrom connects to addr from the loopback IP local (all of 127/8 is
// loopback, so 127.0.0.2 is another client IP on the same machine).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readClosed reads c until the server closes it, and returns what came.
func readClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(failGuard))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open; got so far: %q", b)
	}
	return string(b)
}

// TestHTTPUnauthenticatedSlowBody (issue 12, item 4): a send with a bad
// token offering a body that trickles in is answered 401 at once and its
// connection closed, whatever the body's size or framing; an unauthenticated
// request's body is read only for unauthenticated_body_timeout; and past the
// per-IP connection cap new connections from that IP are closed while
// another client IP is still served.
func TestHTTPUnauthenticatedSlowBody(t *testing.T) {
	// A long unauthenticated read time: the 401 must not wait for it.
	d := newDaemon(t, map[string]string{"http": `unauthenticated_body_timeout = "10m"`})
	for _, framing := range []string{"Content-Length: 100000", "Content-Length: 20000000", "Transfer-Encoding: chunked"} {
		c := dialFrom(t, "127.0.0.1", d.httpAddr)
		fmt.Fprintf(c, "POST /api/v1/emails/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer smx_send_bogus\r\n"+
			"Content-Type: application/json\r\n%s\r\n\r\n", framing)
		if strings.HasPrefix(framing, "Transfer") {
			io.WriteString(c, "10\r\n{\"from\":\"a@b.c\",\r\n")
		} else {
			io.WriteString(c, `{"from":"a@b.c",`) // and nothing more for now
		}
		got := readClosed(t, c)
		if !strings.HasPrefix(got, "HTTP/1.1 401 ") || !strings.Contains(got, "authentication_required") {
			t.Fatalf("%s: %q", framing, got)
		}
	}
	// An unauthenticated route does not wait the full read timeout for a
	// trickled body either, only unauthenticated_body_timeout.
	d = newDaemon(t, map[string]string{"http": "max_connections_per_ip = 4\nunauthenticated_body_timeout = \"1s\""})
	c := dialFrom(t, "127.0.0.1", d.httpAddr)
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
	if got := readClosed(t, c); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Fatalf("healthz with a trickled body: %q", got)
	}

	// Four connections from 127.0.0.1 sit in their headers (they may, for
	// ReadHeaderTimeout); the fifth from that IP is closed unanswered.
	held := make([]net.Conn, 4)
	for i := range held {
		held[i] = dialFrom(t, "127.0.0.1", d.httpAddr)
		io.WriteString(held[i], "GET /healthz HTTP/1.1\r\n")
	}
	// The server counts a connection once it accepted it; a fifth that
	// is served proves the four were not all counted yet, so retry.
	deadline := time.Now().Add(failGuard)
	for {
		c := dialFrom(t, "127.0.0.1", d.httpAddr)
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		got := readClosed(t, c)
		if got == "" {
			break // refused
		}
		if time.Now().After(deadline) {
			t.Fatalf("a fifth connection from one IP was served: %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := dialFrom(t, "127.0.0.2", d.httpAddr)
	io.WriteString(other, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	other.SetReadDeadline(time.Now().Add(failGuard))
	res, err := http.ReadResponse(bufio.NewReader(other), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("another client IP: %v %v", res, err)
	}
	// Closing the held connections gives their slots back.
	for _, h := range held {
		h.Close()
	}
	deadline = time.Now().Add(failGuard)
	for {
		res, err := http.Get("http://" + d.httpAddr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("127.0.0.1 not served again after its connections closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsNotOnTenantListener (issue 12, item 9): /metrics is served on
// the [metrics] listener only; the API listener answers a tenant's key
// 404. With [metrics] listen empty it is on the API listener, for the
// operator token only.
func TestMetricsNotOnTenantListener(t *testing.T) {
	get := func(url, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == 200 && !strings.Contains(string(body), "smtpmux_store_commits_total") {
			t.Fatalf("%s: 200 without metrics", url)
		}
		return res.StatusCode
	}
	d := newDaemon(t, nil)
	if code := get("http://"+d.httpAddr+"/metrics", testRootKey); code != 404 {
		t.Fatalf("/metrics on the API listener: %d, want 404", code)
	}
	if code := get("http://"+d.metricsAddr+"/metrics", ""); code != 200 {
		t.Fatalf("/metrics on the metrics listener: %d", code)
	}
	if code := get("http://"+d.metricsAddr+"/api/v1/providers", testRootKey); code != 404 {
		t.Fatalf("the API on the metrics listener: %d", code)
	}

	const op = "operator-token-0123456789"
	d2 := newDaemon(t, map[string]string{"": fmt.Sprintf("operator_token = %q", op), "metrics": `listen = ""`})
	for _, tok := range []string{"", testRootKey} {
		if code := get("http://"+d2.httpAddr+"/metrics", tok); code != 401 {
			t.Fatalf("/metrics for %q without a metrics listener: %d, want 401", tok, code)
		}
	}
	if code := get("http://"+d2.httpAddr+"/metrics", op); code != 200 {
		t.Fatalf("/metrics with the operator token: %d", code)
	}
}
