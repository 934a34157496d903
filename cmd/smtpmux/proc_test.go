package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the smtpmux binary built once for the end-to-end tests.
var binPath string

func TestMain(m *testing.M) {
	// A test run again inside its own namespaces (tmpfs_test.go) reuses
	// the binary its parent built.
	if bin := os.Getenv(envTestBin); bin != "" {
		binPath = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "smtpmux-e2e-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "smtpmux")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building smtpmux: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testRootKey = "smx_root_e2eTestRootKey0123456789abcdefghijklmnop"

// proc is one running smtpmux process on a temp config.
type proc struct {
	t        *testing.T
	dir      string
	cfgPath  string
	smtpAddr string
	httpAddr string
	// metricsAddr is the [metrics] listener, where /metrics is served.
	metricsAddr string
	cmd         *exec.Cmd
	env         []string // extra environment for the process
	logMu       sync.Mutex
	log         bytes.Buffer
}

// Daemons under test get ports from below the kernel's ephemeral range. A
// port picked with :0 is ephemeral: between the pick and the daemon's bind
// (or its restart) the kernel could hand it to an outgoing connection of a
// parallel test, and the start failed with "address already in use" (it
// did, under load). Below the range only this process hands ports out; the
// random start keeps two test processes apart.
var testPorts struct {
	sync.Mutex
	next, end int
}

// freeAddr returns a loopback address no one else in this process got,
// free when it was picked.
func freeAddr(t *testing.T) string {
	t.Helper()
	testPorts.Lock()
	defer testPorts.Unlock()
	if testPorts.end == 0 {
		low := 32768
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			fmt.Sscan(string(b), &low)
		}
		testPorts.end = low
		testPorts.next = max(1024, low-12000) + rand.IntN(6000)
	}
	for testPorts.next < testPorts.end {
		addr := fmt.Sprintf("127.0.0.1:%d", testPorts.next)
		testPorts.next++
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	// Used up (or an unusual port range): an ephemeral port, as before.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newDaemon writes a config (extra TOML lines appended to sections by
// name) and starts the binary.
func newDaemon(t *testing.T, extra map[string]string) *proc {
	t.Helper()
	return newDaemonEnv(t, extra, nil)
}

// newDaemonAt is newDaemon on a chosen HTTP address (for configs that
// must name it, such as an OAuth redirect URL).
func newDaemonAt(t *testing.T, httpAddr string, extra map[string]string) *proc {
	t.Helper()
	return startProc(t, &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: httpAddr}, extra)
}

// newDaemonEnv is newDaemon with extra environment variables.
func newDaemonEnv(t *testing.T, extra map[string]string, env []string) *proc {
	t.Helper()
	return startProc(t, &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t), env: env}, extra)
}

func startProc(t *testing.T, d *proc, extra map[string]string) *proc {
	t.Helper()
	writeProcConfig(t, d, extra)
	d.start()
	t.Cleanup(d.stop)
	return d
}

// writeProcConfig writes d's config file (see newDaemon) without starting
// the daemon.
func writeProcConfig(t *testing.T, d *proc, extra map[string]string) {
	t.Helper()
	d.cfgPath = filepath.Join(d.dir, "config.toml")
	// A key the template does not place would be dropped without a word
	// (a test's setting silently not applied): refuse it.
	for k := range extra {
		switch k {
		case "", "secret_key", "smtp", "http", "metrics", "delivery", "providers", "limits":
		default:
			t.Fatalf("writeProcConfig: unknown extra key %q", k)
		}
	}
	limits := ""
	if extra["limits"] != "" {
		limits = "[limits]\n" + extra["limits"] + "\n"
	}
	// extra["metrics"] replaces the [metrics] section (an empty listen
	// serves /metrics on the API listener behind the operator token).
	metrics, ok := extra["metrics"]
	if !ok {
		d.metricsAddr = freeAddr(t)
		metrics = fmt.Sprintf("listen = %q", d.metricsAddr)
	}
	delivery := extra["delivery"]
	if !strings.Contains(delivery, "retry_schedule") {
		delivery += "\nretry_schedule = [\"300ms\", \"300ms\"]"
	}
	// The test upstreams listen on 127.0.0.1 and the SES peer is a local
	// endpoint, so the daemons under test take the operator's opt-ins;
	// a test of the safe defaults sets them to false in extra["providers"]
	// (see safeProviders).
	providers := extra["providers"]
	for _, k := range []string{"allow_private_hosts", "ses_default_credentials"} {
		if !strings.Contains(providers, k) {
			providers += "\n" + k + " = true"
		}
	}
	smtp := extra["smtp"]
	if !strings.Contains(smtp, "auth_fail_delay") {
		smtp += "\nauth_fail_delay = \"50ms\""
	}
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "relay.test"
bootstrap_root_key = %q
secret_key = %q
%s
[smtp]
listen = [%q]
%s
[http]
listen = %q
%s
[metrics]
%s
[delivery]
%s
[providers]
%s
%s`, filepath.Join(d.dir, "data"), testRootKey, cmpOr(extra["secret_key"], "e2e-secret-key-0123456789"), extra[""], d.smtpAddr, smtp, d.httpAddr, extra["http"], metrics, delivery, providers, limits)
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cmpOr is cmp.Or for strings, without the import in every test file.
func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (d *proc) start() {
	d.t.Helper()
	if err := d.tryStart(); err != nil {
		d.t.Fatal(err)
	}
}

// tryStart is start that returns the failure instead of ending the test,
// for callers with goroutines of their own to stop first.
func (d *proc) tryStart() error {
	d.cmd = exec.Command(binPath, "serve", "--config", d.cfgPath)
	d.cmd.Env = append(os.Environ(), d.env...)
	d.cmd.Stdout = d
	d.cmd.Stderr = d
	if err := d.cmd.Start(); err != nil {
		return err
	}
	// A node started while etcd is away waits out a few etcd timeouts
	// (2 s each) before it serves on its last view: ~9 s seen.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + d.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", d.smtpAddr); err == nil {
				c.Close()
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("daemon did not come up; log:\n%s", d.logText())
}

// rssKiB is the daemon's resident set size from /proc/<pid>/status.
func (d *proc) rssKiB() (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("VmRSS line %q: %w", line, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", d.cmd.Process.Pid)
}

// Write collects the daemon's output (it implements io.Writer).
func (d *proc) Write(p []byte) (int, error) {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.Write(p)
}

func (d *proc) logText() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// metrics returns one scrape of /metrics on the [metrics] listener.
func (d *proc) metrics() string {
	d.t.Helper()
	resp, err := http.Get("http://" + d.metricsAddr + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		d.t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// stop terminates the daemon gracefully (SIGTERM) and waits.
func (d *proc) stop() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// kill9 kills the daemon without any chance to clean up.
func (d *proc) kill9() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
}

// api calls the Management API with the root key and decodes the envelope.
func (d *proc) api(method, path string, body any) (int, map[string]any) {
	d.t.Helper()
	return d.apiAs(testRootKey, method, path, body)
}

// apiAs calls the API with key ("": no Authorization header). Request
// and answer are checked against the OpenAPI document (checkAPI); to probe
// a secured endpoint without a key, use apiAsBad.
func (d *proc) apiAs(key, method, path string, body any) (int, map[string]any) {
	d.t.Helper()
	return d.apiCall(key, method, path, body, false)
}

// apiBad is api for a request a test makes malformed on purpose: only the
// answer is checked against the OpenAPI document.
func (d *proc) apiBad(method, path string, body any) (int, map[string]any) {
	d.t.Helper()
	return d.apiCall(testRootKey, method, path, body, true)
}

// apiAsBad is apiAs for a request malformed on purpose (see apiBad).
func (d *proc) apiAsBad(key, method, path string, body any) (int, map[string]any) {
	d.t.Helper()
	return d.apiCall(key, method, path, body, true)
}

func (d *proc) apiCall(key, method, path string, body any, badRequest bool) (int, map[string]any) {
	d.t.Helper()
	var reqBody []byte
	if s, ok := body.(string); ok {
		reqBody = []byte(s)
	} else if body != nil {
		reqBody, _ = json.Marshal(body)
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(reqBody)
	}
	url := "http://" + d.httpAddr + "/api/v1" + path
	if strings.HasPrefix(path, "//") { // a path outside /api/v1
		url = "http://" + d.httpAddr + path[1:]
	}
	req, _ := http.NewRequest(method, url, r)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	checkAPI(d.t, req, reqBody, resp, raw, badRequest)
	if err := json.Unmarshal(raw, &out); err != nil {
		d.t.Fatalf("%s %s: non-JSON answer %d %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// data returns the envelope's data object.
func data(m map[string]any) map[string]any {
	d, _ := m["data"].(map[string]any)
	return d
}

// setupRelayExisting deactivates the managed account (so the team's own
// providers carry the mail) and returns a new sending key.
func (d *proc) setupRelayExisting() (string, string) {
	d.t.Helper()
	_, resp := d.api("GET", "/providers", nil)
	for _, p := range resp["data"].([]any) {
		if pm := p.(map[string]any); pm["is_shared"] == true {
			if code, r := d.api("POST", "/providers/"+pm["id"].(string)+"/deactivate", nil); code != 200 {
				d.t.Fatalf("deactivate managed: %d %v", code, r)
			}
		}
	}
	code, resp := d.api("POST", "/api-keys", map[string]any{"name": "e2e", "type": "sending"})
	if code != 201 {
		d.t.Fatalf("create key: %d %v", code, resp)
	}
	return "", data(resp)["key"].(string)
}

func sleepMS(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

// setupRelay points the daemon's default team at upstream: it adds an smtp
// provider, deactivates the managed account and returns a sending key.
func (d *proc) setupRelay(provider map[string]any) (providerID, sendingKey string) {
	d.t.Helper()
	code, resp := d.api("POST", "/providers", provider)
	if code != 201 {
		d.t.Fatalf("create provider: %d %v", code, resp)
	}
	providerID = data(resp)["id"].(string)
	_, resp = d.api("GET", "/providers", nil)
	for _, p := range resp["data"].([]any) {
		if pm := p.(map[string]any); pm["is_shared"] == true {
			if code, r := d.api("POST", "/providers/"+pm["id"].(string)+"/deactivate", nil); code != 200 {
				d.t.Fatalf("deactivate managed: %d %v", code, r)
			}
		}
	}
	code, resp = d.api("POST", "/api-keys", map[string]any{"name": "e2e", "type": "sending"})
	if code != 201 {
		d.t.Fatalf("create key: %d %v", code, resp)
	}
	return providerID, data(resp)["key"].(string)
}

// waitEmail polls GET /emails/{id} until its status is final.
func (d *proc) waitEmail(id string) map[string]any {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last map[string]any
	for time.Now().Before(deadline) {
		code, resp := d.api("GET", "/emails/"+id, nil)
		if code == 200 {
			last = data(resp)
			if s := last["status"]; s != "pending" {
				return last
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("email %s still pending: %v", id, last)
	return nil
}

// requirePeer skips a test whose third-party peer is missing, except under
// CI, where a missing peer is a failure: the suite must not go green by
// silently testing less.
func requirePeer(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		// Debian puts daemons' tools (Postfix's smtp-sink) in /usr/sbin,
		// which is not always on a user's PATH.
		sbin := filepath.Join("/usr/sbin", name)
		if _, serr := os.Stat(sbin); serr == nil {
			return sbin
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("test peer %s is missing (run ./scripts/install-test-peers.sh)", name)
		}
		t.Skipf("test peer %s is missing (run ./scripts/install-test-peers.sh)", name)
	}
	return p
}
