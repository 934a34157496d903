package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestSystemdNotifyReadyzAndMetrics runs the daemon as systemd would
// (NOTIFY_SOCKET set) and checks readiness, the metrics endpoint and the
// stop notification.
func TestSystemdNotifyReadyzAndMetrics(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notes := make(chan string, 10)
	go func() {
		buf := make([]byte, 256)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()
	up := testpeer.Start(t, testpeer.Options{})
	// GOGC empty whatever the test's environment: the collector's tuner runs.
	d := newDaemonEnv(t, nil, []string{"NOTIFY_SOCKET=" + sock, "GOGC="})
	expectNote(t, notes, "READY=1")
	if p := metricValue(t, d.metrics(), "go_gc_gogc_percent"); p != 50 {
		t.Errorf("go_gc_gogc_percent = %v at start, want 50 (quiet)", p)
	}

	resp, err := http.Get("http://" + d.httpAddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	if _, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("metrics")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	up.WaitMessages(t, 1, 10*time.Second)
	var body string
	for i := 0; i < 250; i++ { // the attempt's result is recorded just after the upstream's 250
		// The finished message waits a minute in the main file for the
		// history mover: the backlog gauge counts it.
		if body = d.metrics(); strings.Contains(body, `outcome="sent"`) && metricValue(t, body, "smtpmux_history_backlog_messages") == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"smtpmux_messages_accepted_total 1", "smtpmux_smtp_sessions_total",
		`smtpmux_queue_messages{state="queued"}`, `smtpmux_delivery_attempts_total{outcome="sent"`,
		"smtpmux_store_commits_total", "smtpmux_provider_pulled", "smtpmux_delivery_attempt_seconds_bucket",
		"smtpmux_provider_connection_limit{provider=", "smtpmux_webhook_deliveries_pending 0",
		"smtpmux_history_backlog_messages 1", "smtpmux_history_backlog_oldest_seconds ",
		`smtpmux_store_free_pages{state="free"} `, `smtpmux_store_free_pages{state="pending"} `, "smtpmux_store_freelist_bytes "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Mail flowed: within a tick or two of the tuner (1 s) the collector
	// works at more than +50 % (internal/gctune).
	for i := 0; metricValue(t, d.metrics(), "go_gc_gogc_percent") <= 50; i++ {
		if i == 250 {
			t.Fatal("go_gc_gogc_percent stayed at 50 while mail flowed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := metricValue(t, body, "smtpmux_store_file_bytes"); n < 32<<10 {
		t.Errorf("smtpmux_store_file_bytes = %v, want the main file's size (≥ 32 KiB)", n)
	}
	if strings.Contains(body, "b@example.net") {
		t.Error("/metrics must not carry recipient addresses")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	expectNote(t, notes, "STOPPING=1")
}

func expectNote(t *testing.T, notes <-chan string, want string) {
	t.Helper()
	select {
	case n := <-notes:
		if n != want {
			t.Fatalf("notify socket got %q, want %q", n, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s on the notify socket", want)
	}
}

const testOperatorToken = "e2e-operator-token-0123456789"

func TestBackupAndRestore(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"": `operator_token = "` + testOperatorToken + `"`})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	id, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("backup"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	d.waitEmail(id)

	out := filepath.Join(t.TempDir(), "snap.db")
	run := func(args ...string) (string, error) {
		b, err := exec.Command(binPath, args...).CombinedOutput()
		return string(b), err
	}
	if msg, err := run("backup", "--url", "http://"+d.httpAddr, "--token", "wrong-token-0123456789", "--out", out); err == nil || !strings.Contains(msg, "401") {
		t.Fatalf("backup with a wrong token: %v %s", err, msg)
	}
	if msg, err := run("backup", "--url", "http://"+d.httpAddr, "--token", testOperatorToken, "--out", out); err != nil {
		t.Fatalf("backup: %v %s", err, msg)
	}
	// Restore refuses while the daemon holds the store.
	if msg, err := run("restore", "--config", d.cfgPath, "--from", out); err == nil || !strings.Contains(msg, "stop the daemon") {
		t.Fatalf("restore while running: %v %s", err, msg)
	}
	d.stop()
	os.Remove(filepath.Join(d.dir, "data", "smtpmux.db"))
	if msg, err := run("restore", "--config", d.cfgPath, "--from", out); err != nil {
		t.Fatalf("restore: %v %s", err, msg)
	}
	d.start()
	if code, resp := d.api("GET", "/emails/"+id, nil); code != 200 || data(resp)["status"] != "sent" {
		t.Fatalf("after restore: %d %v", code, resp)
	}
}

func TestSIGHUPReload(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	orig, _ := os.ReadFile(d.cfgPath)

	// An invalid file is refused and the daemon keeps running as before.
	os.WriteFile(d.cfgPath, append(append([]byte{}, orig...), "\nbogus_key = 1\n"...), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "reload refused")
	c := d.client(key)
	if _, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("hup1")); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	// A valid file applies: the per-key limit drops to 2 a minute.
	os.WriteFile(d.cfgPath, append(append([]byte{}, orig...), "\n[limits]\nsends_per_minute = 2\n"...), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "configuration reloaded")
	var last error
	for i := 0; i < 3; i++ {
		_, last = sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("hup2"))
	}
	if smtpCode(last) != 451 {
		t.Fatalf("after reload to 2/min the third send got %v, want 451", last)
	}
}

func waitLog(t *testing.T, d *proc, substr string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if strings.Contains(d.logText(), substr) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log lacks %q:\n%s", substr, d.logText())
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit
// (with ExecStart pointing at the binary under test).
func TestSystemdUnitVerifies(t *testing.T) {
	sa := requirePeer(t, "systemd-analyze")
	unit, err := os.ReadFile("../../systemd/smtpmux.service")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "smtpmux.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/smtpmux", binPath)), 0o644)
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSecretsNeverLogged configures every kind of secret, exercises the
// API and SMTP with them (including failures), and greps the whole log.
func TestSecretsNeverLogged(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{Username: "relay", Password: "upstream-pw-9f8e7d"})
	d := newDaemon(t, map[string]string{"": `operator_token = "` + testOperatorToken + `"
[oauth.google]
client_id = "google-client-id"
client_secret = "google-client-secret-5a4b3c"
redirect_url = "http://127.0.0.1:1/oauth/callback"
`})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(),
		"smtp_protocol": "none", "smtp_username": "relay", "smtp_password": "upstream-pw-9f8e7d"})
	code, resp := d.api("POST", "/providers", map[string]any{"name": "ses", "type": "ses", "ses_region": "us-east-1",
		"ses_access_key_id": "AKIAEXAMPLEEXAMPLE02", "ses_secret_access_key": "ses-secret-1a2b3c"})
	if code != 201 {
		t.Fatalf("ses provider: %d %v", code, resp)
	}
	c := d.client(key)
	if _, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("secrets")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Failures log too: a wrong key at AUTH, a wrong root key at the API.
	dialQuiet(d, "smx_mbx_wrongKeyWrongKeyWrongKeyWrongKey000000")
	d.apiAs("smx_root_notTheRootKeyNotTheRootKey0000000000", "GET", "/providers", nil)
	d.api("POST", "/providers/oauth/google/start", nil)
	d.stop()
	log := d.logText()
	for _, secret := range []string{key, testRootKey, "e2e-secret-key-0123456789", testOperatorToken,
		"upstream-pw-9f8e7d", "ses-secret-1a2b3c", "google-client-secret-5a4b3c",
		"smx_mbx_wrongKeyWrongKeyWrongKeyWrongKey000000", "smx_root_notTheRootKeyNotTheRootKey0000000000"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log contains the secret %q", secret)
		}
	}
	if !strings.Contains(log, `"event":"accepted"`) {
		t.Fatal("the log has no accepted event: did the run happen?")
	}
}
