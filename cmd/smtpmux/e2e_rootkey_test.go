package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var printedRootKeyRe = regexp.MustCompile(`smx_root_[A-Za-z0-9_-]+`)

// newBareProc is a daemon config without bootstrap_root_key (the first
// start generates and prints the root key); it is written, not started.
func newBareProc(t *testing.T, httpAddr string) *proc {
	t.Helper()
	d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: httpAddr}
	d.cfgPath = filepath.Join(d.dir, "config.toml")
	cfg := `data_dir = "` + filepath.Join(d.dir, "data") + `"
hostname = "relay.test"
secret_key = "e2e-secret-key-0123456789"
[smtp]
listen = ["` + d.smtpAddr + `"]
[http]
listen = "` + httpAddr + `"
[metrics]
listen = "` + freeAddr(t) + `"
`
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	return d
}

// TestRootKeyFirstStartPortTaken is issue 17's lost root key: a first
// start that fails on a taken port (8025 is also Mailpit's and MailHog's)
// must not burn the root key; the next start prints one that works.
func TestRootKeyFirstStartPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	d := newBareProc(t, taken.Addr().String())
	out, err := exec.Command(binPath, "serve", "--config", d.cfgPath).CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with its HTTP port taken:\n%s", out)
	}
	if !bytes.Contains(out, []byte("address already in use")) {
		t.Fatalf("first start: want a bind failure, got:\n%s", out)
	}
	if k := printedRootKeyRe.Find(out); k != nil {
		t.Fatalf("a start that failed printed (and so burned) a root key:\n%s", out)
	}
	taken.Close()
	d.start()
	key := printedRootKeyRe.FindString(d.logText())
	if key == "" {
		t.Fatalf("second start printed no root key:\n%s", d.logText())
	}
	if code, resp := d.apiAs(key, "GET", "/api-keys", nil); code != 200 {
		t.Fatalf("the printed root key: %d %v", code, resp)
	}
}

// TestKeysResetRoot: with the daemon stopped, "keys reset-root" mints a
// new root key from the store file alone; the old one stops working. With
// the daemon running it refuses and says why.
func TestKeysResetRoot(t *testing.T) {
	d := newDaemon(t, nil)
	if code, _ := d.api("GET", "/api-keys", nil); code != 200 {
		t.Fatalf("bootstrap key: %d", code)
	}
	dataDir := filepath.Join(d.dir, "data")
	resetRoot := func(args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(binPath, append([]string{"keys", "reset-root"}, args...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	if _, stderr, err := resetRoot("--data-dir", dataDir); err == nil || !strings.Contains(stderr, "stop the daemon") {
		t.Fatalf("reset-root with the daemon running: %v %q, want a refusal that says to stop it", err, stderr)
	}
	d.stop()
	stdout, stderr, err := resetRoot("--data-dir", dataDir)
	if err != nil {
		t.Fatalf("reset-root: %v\n%s", err, stderr)
	}
	newKey := strings.TrimSpace(stdout)
	if !printedRootKeyRe.MatchString(newKey) || newKey == testRootKey {
		t.Fatalf("reset-root printed %q, want a new root key", stdout)
	}
	if _, stderr, err := resetRoot("--data-dir", dataDir, "--team", "nosuchteam"); err == nil || !strings.Contains(stderr, "nosuchteam") {
		t.Fatalf("reset-root for a missing team: %v %q", err, stderr)
	}
	d.start()
	if code, _ := d.api("GET", "/api-keys", nil); code != 401 {
		t.Errorf("the old root key after reset-root: %d, want 401", code)
	}
	code, resp := d.apiAs(newKey, "GET", "/api-keys", nil)
	if code != 200 {
		t.Fatalf("the new root key: %d %v", code, resp)
	}
	// A later start does not bring bootstrap_root_key back.
	d.stop()
	d.start()
	if code, _ := d.api("GET", "/api-keys", nil); code != 401 {
		t.Errorf("bootstrap_root_key after reset-root and a restart: %d, want 401", code)
	}
}
