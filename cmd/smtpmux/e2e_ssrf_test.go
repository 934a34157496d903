package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// safeProviders is the [providers] policy of a default install, for the
// tests that prove its refusals (startProc gives other tests the opt-ins).
var safeProviders = map[string]string{"providers": "allow_private_hosts = false\nses_default_credentials = false"}

// addrInText finds an IP address (with or without port) in a message.
var addrInText = regexp.MustCompile(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[?::1\]?|:\d{2,5}\b`)

// TestProviderPolicyRefusesInternalTargets: with the safe defaults a team
// cannot create or edit a provider that points into the operator's network
// or signs with the daemon's AWS credentials; each refusal is a 422
// naming the field.
func TestProviderPolicyRefusesInternalTargets(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, safeProviders)
	for _, host := range []string{"127.0.0.1", "localhost", "LocalHost.", "[::1]", "::ffff:127.0.0.1", "2130706433",
		"0177.0.0.1", "169.254.169.254", "10.0.0.1", "fd00::1", "metadata.google.internal", "mailhog"} {
		code, resp := d.api("POST", "/providers", map[string]any{"name": "x", "smtp_host": host, "smtp_port": 25, "smtp_protocol": "none"})
		if code != 422 || !namesField(resp, "smtp_host") {
			t.Fatalf("smtp_host %q: %d %v, want 422 naming smtp_host", host, code, resp)
		}
	}
	id := d.must(201, "POST", "/providers", map[string]any{"name": "pub", "smtp_host": "smtp.example.com", "smtp_port": 587})["id"].(string)
	if code, resp := d.api("PATCH", "/providers/"+id, map[string]any{"smtp_host": "127.0.0.1"}); code != 422 || !namesField(resp, "smtp_host") {
		t.Fatalf("PATCH to loopback: %d %v", code, resp)
	}
	ses := map[string]any{"name": "own ses", "type": "ses", "ses_region": "us-east-1"}
	if code, resp := d.api("POST", "/providers", ses); code != 422 || !namesField(resp, "ses_access_key_id") {
		t.Fatalf("keyless ses: %d %v, want 422 naming ses_access_key_id", code, resp)
	}
	ses["ses_access_key_id"], ses["ses_secret_access_key"] = "AKIAEXAMPLEEXAMPLE03", "team-secret"
	ses["ses_endpoint"] = "http://127.0.0.1:8005"
	if code, resp := d.api("POST", "/providers", ses); code != 422 || !namesField(resp, "ses_endpoint") {
		t.Fatalf("custom ses endpoint: %d %v, want 422 naming ses_endpoint", code, resp)
	}
	ses["ses_endpoint"] = "https://email.us-east-1.amazonaws.com"
	d.must(201, "POST", "/providers", ses)
}

func namesField(resp map[string]any, field string) bool {
	e, _ := resp["error"].(map[string]any)
	if e == nil || e["code"] != "validation_error" {
		return false
	}
	errs, _ := e["errors"].([]any)
	for _, x := range errs {
		if m, _ := x.(map[string]any); m["field"] == field {
			return true
		}
	}
	return e["param"] == field
}

// TestDialTimeCheckCatchesStoredInternalHosts: providers stored while the
// operator allowed private hosts — an SMTP host named "localhost" (a name,
// resolved at dial time to 127.0.0.1), a keyless SES account and a local
// SES endpoint — stop working once the opt-in is off: the test refuses them
// without a connection to the upstream, names the reason without any
// address, and puts the enabled ones in error; mail does not reach the
// upstream.
func TestDialTimeCheckCatchesStoredInternalHosts(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	var sesHits atomic.Int32
	sesUp := localHTTP(t, func(w http.ResponseWriter, r *http.Request) { sesHits.Add(1); w.WriteHeader(500) })
	d := newDaemon(t, nil) // opt-ins on (the test default)
	smtpID, key := d.setupRelay(map[string]any{"name": "inward", "smtp_host": "localhost", "smtp_port": up.Port(), "smtp_protocol": "none"})
	keyless := d.must(201, "POST", "/providers", map[string]any{"name": "keyless", "type": "ses", "ses_region": "us-east-1"})["id"].(string)
	custom := d.must(201, "POST", "/providers", map[string]any{"name": "custom", "type": "ses", "ses_region": "us-east-1",
		"ses_access_key_id": "AKIAEXAMPLEEXAMPLE04", "ses_secret_access_key": "team-secret", "ses_endpoint": sesUp})["id"].(string)

	d.stop()
	cfg, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	safe := strings.NewReplacer("allow_private_hosts = true", "allow_private_hosts = false",
		"ses_default_credentials = true", "ses_default_credentials = false").Replace(string(cfg))
	if safe == string(cfg) {
		t.Fatal("the test config has no opt-ins to turn off")
	}
	if err := os.WriteFile(d.cfgPath, []byte(safe), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()

	for _, tc := range []struct{ id, want string }{
		{smtpID, "internal address"}, {keyless, "no access key"}, {custom, "not an Amazon SES endpoint"},
	} {
		res := d.must(200, "POST", "/providers/"+tc.id+"/test", nil)
		msg := fmt.Sprint(res["message"])
		if res["success"] != false || res["deferred"] != false || !strings.Contains(msg, tc.want) {
			t.Fatalf("test of %s: %v, want a failure naming %q", tc.id, res, tc.want)
		}
		if addrInText.MatchString(msg) || strings.Contains(msg, strconv.Itoa(up.Port())) {
			t.Fatalf("test message shows an address: %q", msg)
		}
		if p := d.provider(tc.id); p["status"] != "error" || addrInText.MatchString(fmt.Sprint(p["status_reason"])) {
			t.Fatalf("provider %s after the refused test: %v %v", tc.id, p["status"], p["status_reason"])
		}
	}
	if n := up.Conns(); n != 0 {
		t.Fatalf("the SMTP upstream on localhost got %d connections", n)
	}
	if n := sesHits.Load(); n != 0 {
		t.Fatalf("the custom SES endpoint got %d requests", n)
	}
	// Re-enabled by hand, the SMTP provider still does not reach the
	// upstream with mail: the send fails on the policy, the message stays
	// off it.
	d.must(200, "POST", "/providers/"+smtpID+"/activate", nil)
	c := d.client(key)
	defer c.Close()
	id, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("inward"))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	e := d.waitEmailAttempted(id)
	if up.Conns() != 0 {
		t.Fatalf("mail reached the inward upstream: %v", e)
	}
	// The refusal is a configuration fault, not a network hiccup to
	// retry: the provider goes to error again, and the reason names no
	// address.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		p := d.provider(smtpID)
		if p["status"] == "error" {
			if r := fmt.Sprint(p["status_reason"]); addrInText.MatchString(r) || !strings.Contains(r, "internal address") {
				t.Fatalf("status_reason after the refused send: %q", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a refused send the provider is %v", p["status"])
		}
	}
}

// waitEmailAttempted polls until the message has an attempt or is final.
func (d *proc) waitEmailAttempted(id string) map[string]any {
	d.t.Helper()
	var e map[string]any
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		e = d.email(id)
		if at, _ := e["attempts"].([]any); len(at) > 0 || e["status"] != "pending" {
			return e
		}
	}
	d.t.Fatalf("message %s was never attempted: %v", id, e)
	return nil
}

// TestProviderTestNamesFailureClass: a connection test reports the class
// of a failure (refused, closed, the upstream's reply code), never the
// daemon's local address, the resolved remote address, or an upstream's
// raw answer beyond a short, cleaned reason.
func TestProviderTestNamesFailureClass(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, nil) // opt-ins on: the failures come from local peers
	create := func(body map[string]any) string {
		return d.must(201, "POST", "/providers", body)["id"].(string)
	}
	test := func(id string) string {
		res := d.must(200, "POST", "/providers/"+id+"/test", nil)
		if res["success"] != false {
			t.Fatalf("test of %s succeeded: %v", id, res)
		}
		return fmt.Sprint(res["message"])
	}
	noAddr := func(what, msg string, extra ...string) {
		t.Helper()
		if addrInText.MatchString(msg) {
			t.Fatalf("%s: the message shows an address: %q", what, msg)
		}
		for _, s := range extra {
			if strings.Contains(msg, s) {
				t.Fatalf("%s: the message contains %q: %q", what, s, msg)
			}
		}
	}

	// Nothing listens: "connection refused", not "dial tcp 127.0.0.1:…".
	closed := freeAddr(t)
	_, closedPort, _ := net.SplitHostPort(closed)
	port, _ := strconv.Atoi(closedPort)
	msg := test(create(map[string]any{"name": "closed", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_protocol": "none"}))
	if msg != "connection refused" {
		t.Fatalf("closed port: %q, want \"connection refused\"", msg)
	}

	// Accepts and hangs up: "connection closed by the upstream".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	msg = test(create(map[string]any{"name": "eof", "smtp_host": "127.0.0.1", "smtp_port": ln.Addr().(*net.TCPAddr).Port, "smtp_protocol": "none"}))
	if msg != "connection closed by the upstream" {
		t.Fatalf("hang-up: %q", msg)
	}

	// An SMTP refusal: the codes and a fixed description of their class,
	// never the upstream's text (the same goes into status_reason).
	up := testpeer.Start(t, testpeer.Options{})
	long := "Access denied: go away from [10.9.8.7]:51234 at fd00::7 secret.internal.corp " + strings.Repeat("x", 300)
	up.Always(testpeer.StepConnect, "", testpeer.Reply(554, "5.7.1", long))
	id := create(map[string]any{"name": "denied", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	msg = test(id)
	if msg != "the upstream refused the connection (554 5.7.1)" {
		t.Fatalf("554: %q", msg)
	}
	noAddr("554", msg, "10.9.8.7", "fd00::7", "secret.internal.corp", "Access denied", "go away")
	if reason := fmt.Sprint(d.provider(id)["status_reason"]); strings.Contains(reason, "secret.internal.corp") || strings.Contains(reason, "go away") {
		t.Fatalf("status_reason repeats the upstream: %q", reason)
	}
	// Refused credentials: the same, at AUTH.
	authUp := testpeer.Start(t, testpeer.Options{Username: "u", Password: "p"})
	authUp.Always(testpeer.StepAuth, "", testpeer.Reply(535, "5.7.8", "bad creds for db-password=hunter2 at 10.1.2.3"))
	msg = test(create(map[string]any{"name": "auth", "smtp_host": authUp.Host(), "smtp_port": authUp.Port(), "smtp_protocol": "none",
		"smtp_username": "u", "smtp_password": "wrong"}))
	if msg != "the upstream refused authentication (535 5.7.8)" {
		t.Fatalf("535: %q", msg)
	}
	noAddr("535", msg, "hunter2", "bad creds")
	// An EHLO that offers only unknown mechanisms: their names are the
	// upstream's words too.
	mechUp := testpeer.Start(t, testpeer.Options{Username: "u", Password: "p", AuthMechs: []string{"X-SECRET-INTERNAL-CORP"}})
	msg = test(create(map[string]any{"name": "mech", "smtp_host": mechUp.Host(), "smtp_port": mechUp.Port(), "smtp_protocol": "none",
		"smtp_username": "u", "smtp_password": "p"}))
	if !strings.HasPrefix(msg, "configuration problem: ") {
		t.Fatalf("no usable AUTH: %q", msg)
	}
	noAddr("no usable AUTH", msg, "X-SECRET")

	// An SES endpoint that answers with a body of its own: the status and
	// AWS error code are reported, the body is not.
	sesUp := localHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", "InvalidClientTokenId")
		w.WriteHeader(403)
		fmt.Fprint(w, `{"__type":"InvalidClientTokenId","message":"leaked-internal-body from 10.1.1.1 signed by AKIAOPERATOR"}`)
	})
	msg = test(create(map[string]any{"name": "ses", "type": "ses", "ses_region": "us-east-1", "ses_endpoint": sesUp,
		"ses_access_key_id": "AKIAEXAMPLEEXAMPLE05", "ses_secret_access_key": "team-secret"}))
	if !strings.Contains(msg, "403") || !strings.Contains(msg, "InvalidClientTokenId") {
		t.Fatalf("ses 403: %q", msg)
	}
	noAddr("ses 403", msg, "leaked-internal-body", "AKIAOPERATOR")
}

// localHTTP serves h on 127.0.0.1 and returns its base URL.
func localHTTP(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
