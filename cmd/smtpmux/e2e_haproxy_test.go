package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// haproxy is a real HAProxy (Debian's package; a test peer installed by
// scripts/install-test-peers.sh) in TCP mode in front of the daemon, run
// as the test's user in the foreground.
type haproxy struct {
	cmd *exec.Cmd
	log strings.Builder
}

// startHAProxy runs HAProxy on cfg (its defaults section is added) and
// waits until every address in binds accepts connections.
func startHAProxy(t *testing.T, cfg string, binds ...string) *haproxy {
	t.Helper()
	bin := requirePeer(t, "haproxy")
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	full := "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n" + cfg
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &haproxy{cmd: exec.Command(bin, "-db", "-f", path)}
	h.cmd.Stdout, h.cmd.Stderr = &h.log, &h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { h.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", h.log.String())
		}
	})
	for _, addr := range binds {
		waitFor(t, 10*time.Second, "haproxy to listen on "+addr, func() bool {
			select {
			case <-exited:
				t.Fatalf("haproxy exited: %s", h.log.String())
			default:
			}
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return h
}

// TestProxyProtocolThroughHAProxy: a real HAProxy in front of the SMTP
// and HTTP listeners with send-proxy-v2 (and send-proxy, v1, for one
// SMTP frontend). Its frontends present their clients as 203.0.113.7
// and 203.0.113.8 (tcp-request connection set-src), so two clients are
// told apart though every test connection comes from 127.0.0.1:
//   - SMTP max_connections_per_ip = 1 lets one connection of each in
//     and refuses the second of 203.0.113.7;
//   - wrong bearer tokens on the HTTP API from 203.0.113.7 reach
//     auth_fail_limit (429), while 203.0.113.8 is still only told 401;
//   - that limit is shared with SMTP AUTH per client address: the SMTP
//     session of 203.0.113.7 is refused AUTH (421), 203.0.113.8's gets 535.
func TestProxyProtocolThroughHAProxy(t *testing.T) {
	t.Parallel()
	smtpA, smtpB, httpA, httpB := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t)}
	startHAProxy(t, fmt.Sprintf(`
frontend smtp_a
    bind %s
    tcp-request connection set-src ipv4(203.0.113.7)
    default_backend smtpmux_smtp_v2
frontend smtp_b
    bind %s
    tcp-request connection set-src ipv4(203.0.113.8)
    default_backend smtpmux_smtp_v1
frontend api_a
    bind %s
    tcp-request connection set-src ipv4(203.0.113.7)
    default_backend smtpmux_api
frontend api_b
    bind %s
    tcp-request connection set-src ipv4(203.0.113.8)
    default_backend smtpmux_api
backend smtpmux_smtp_v2
    option tcp-check
    tcp-check connect default
    tcp-check expect string 220
    server relay1 %s send-proxy-v2 check inter 300ms
backend smtpmux_smtp_v1
    server relay1 %s send-proxy
backend smtpmux_api
    option httpchk GET /readyz
    http-check expect status 200
    server relay1 %s send-proxy-v2 check inter 300ms
`, smtpA, smtpB, httpA, httpB, d.smtpAddr, d.smtpAddr, d.httpAddr), smtpA, smtpB, httpA, httpB)

	const limit = 3
	writeProcConfig(t, d, map[string]string{
		"smtp": fmt.Sprintf("proxy_protocol_from = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 1\nauth_fail_limit = %d", limit),
		"http": `proxy_protocol_from = ["127.0.0.1/32"]`,
	})
	// The API answers only through the balancer now: the harness (its
	// readiness check, d.api) talks to it as client 203.0.113.7.
	d.httpAddr = httpA
	d.start()
	t.Cleanup(d.stop)

	// The health checks (as docs/cluster.md configures them) go through
	// the PROXY protocol too; HAProxy sends clients on only once they pass.
	var a *rawClient
	waitFor(t, 10*time.Second, "SMTP through HAProxy as 203.0.113.7", func() bool {
		c, code, err := dialRaw(smtpA, "")
		if err == nil && code == 220 {
			a = c
			return true
		}
		if c != nil {
			c.conn.Close()
		}
		return false
	})
	defer a.conn.Close()
	b, code, err := dialRaw(smtpB, "")
	if err != nil || code != 220 {
		t.Fatalf("SMTP through HAProxy (send-proxy, v1) as 203.0.113.8: %d %v", code, err)
	}
	defer b.conn.Close()
	if c, code, err := dialRaw(smtpA, ""); err != nil || code != 421 {
		t.Fatalf("second SMTP connection of 203.0.113.7: %d %v, want 421", code, err)
	} else {
		c.conn.Close()
	}

	bearer := func(addr string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/providers", nil)
		req.Header.Set("Authorization", "Bearer smx_live_notAKeyOfAnyTeam0123456789abcdef")
		// A loaded machine can fail one of HAProxy's health checks, and
		// HAProxy then closes a client with no server to send it to (EOF):
		// that request never reached smtpmux, so it is asked again.
		var res *http.Response
		waitFor(t, 10*time.Second, "an answer through HAProxy", func() bool {
			var err error
			res, err = (&http.Client{Timeout: 10 * time.Second}).Do(req)
			return err == nil
		})
		res.Body.Close()
		return res.StatusCode
	}
	for i := range limit {
		if code := bearer(httpA); code != 401 {
			t.Fatalf("wrong bearer %d as 203.0.113.7: %d, want 401", i+1, code)
		}
	}
	if code := bearer(httpA); code != 429 {
		t.Fatalf("wrong bearer past auth_fail_limit as 203.0.113.7: %d, want 429", code)
	}
	if code := bearer(httpB); code != 401 {
		t.Fatalf("wrong bearer as 203.0.113.8 after 203.0.113.7 hit the limit: %d, want 401", code)
	}

	for _, s := range []struct {
		c    *rawClient
		who  string
		want int
	}{{a, "203.0.113.7", 421}, {b, "203.0.113.8", 535}} {
		if err := s.c.startTLS(); err != nil {
			t.Fatalf("STARTTLS through HAProxy as %s: %v", s.who, err)
		}
		if code, text, err := s.c.auth("smx_live_notAKeyOfAnyTeam0123456789abcdef"); code != s.want {
			t.Fatalf("SMTP AUTH as %s: %d %q %v, want %d", s.who, code, text, err, s.want)
		}
	}
	// The API still works for a client within its limits (the harness's
	// own calls go through frontend api_a, now limited, so ask as B).
	res, err := http.Get("http://" + httpB + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("/readyz through HAProxy: %d", res.StatusCode)
	}
}
