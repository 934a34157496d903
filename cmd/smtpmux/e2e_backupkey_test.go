package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// withoutSecretKeyLine drops secret_key from d's config, so the daemon
// runs with the key it generates into data_dir/secret.key, as a default
// install does.
func withoutSecretKeyLine(t *testing.T, d *proc) {
	t.Helper()
	b, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := regexp.MustCompile(`(?m)^secret_key = .*\n`).ReplaceAllString(string(b), "")
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBackupWithSecretKeyRestoreElsewhere is issue 17's backup that could
// not be restored on a new machine: "backup --with-secret-key" writes the
// key (0600) beside the snapshot; restore onto a fresh data_dir refuses
// without it or with a wrong one (changing nothing), and with it the
// restored daemon opens the provider's password and delivers. Run as
// root, restore leaves the files to data_dir's owner. A backup with no
// operator token says which setting is missing.
func TestBackupWithSecretKeyRestoreElsewhere(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{Username: "relay", Password: "upstream-pw-4c3b2a"})
	a := newDaemon(t, map[string]string{"": `operator_token = "` + testOperatorToken + `"`})
	a.stop()
	withoutSecretKeyLine(t, a)
	a.start()
	_, key := a.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(),
		"smtp_protocol": "none", "smtp_username": "relay", "smtp_password": "upstream-pw-4c3b2a"})
	c := a.client(key)
	id, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("before backup"))
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if e := a.waitEmail(id); e["status"] != "sent" {
		t.Fatalf("before the backup: %v", e)
	}

	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), env...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	snap := filepath.Join(t.TempDir(), "snap.db")
	noToken := []string{"SMTPMUX_OPERATOR_TOKEN="}
	if msg, err := run(noToken, "backup", "--url", "http://"+a.httpAddr, "--out", snap); err == nil || !strings.Contains(msg, "SMTPMUX_OPERATOR_TOKEN") {
		t.Fatalf("backup without a token: %v %q, want it to name SMTPMUX_OPERATOR_TOKEN", err, msg)
	}
	if msg, err := run(nil, "backup", "--url", "http://"+a.httpAddr, "--token", testOperatorToken,
		"--with-secret-key", "--config", a.cfgPath, "--out", snap); err != nil {
		t.Fatalf("backup --with-secret-key: %v %s", err, msg)
	}
	fi, err := os.Stat(snap + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup key file: %v %v, want mode 0600", fi, err)
	}
	aKey, _ := os.ReadFile(filepath.Join(a.dir, "data", "secret.key"))
	if got, _ := os.ReadFile(snap + ".key"); strings.TrimSpace(string(got)) != strings.TrimSpace(string(aKey)) || len(aKey) == 0 {
		t.Fatalf("backup key file holds %d bytes, not the daemon's secret key", len(got))
	}

	// The new machine: a daemon without an operator token says so, then
	// its data_dir is emptied and given to a service user.
	b := newDaemon(t, nil)
	if msg, err := run(nil, "backup", "--url", "http://"+b.httpAddr, "--token", "anything-0123456789", "--out", snap+".b"); err == nil ||
		!strings.Contains(msg, "401") || !strings.Contains(msg, "set operator_token") {
		t.Fatalf("backup from a daemon without operator_token: %v %q, want a 401 naming operator_token", err, msg)
	}
	b.stop()
	withoutSecretKeyLine(t, b)
	bData := filepath.Join(b.dir, "data")
	if err := os.RemoveAll(bData); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(bData, 0o700)
	owner := os.Getuid()
	if owner == 0 {
		owner = 4242 // the service user's uid
		if err := os.Chown(bData, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	untouched := func(what string) {
		t.Helper()
		if es, _ := os.ReadDir(bData); len(es) != 0 {
			t.Fatalf("%s: the refused restore left %v in data_dir", what, es)
		}
	}
	if msg, err := run(nil, "restore", "--config", b.cfgPath, "--from", snap); err == nil || !strings.Contains(msg, "--secret-key-file") {
		t.Fatalf("restore with no secret key: %v %q, want a refusal naming --secret-key-file", err, msg)
	}
	untouched("no key")
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	os.WriteFile(wrong, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	if msg, err := run(nil, "restore", "--config", b.cfgPath, "--from", snap, "--secret-key-file", wrong); err == nil ||
		!strings.Contains(msg, "cannot open the secrets") {
		t.Fatalf("restore with a wrong key: %v %q, want a refusal", err, msg)
	}
	untouched("wrong key")
	if msg, err := run(nil, "restore", "--config", b.cfgPath, "--from", snap, "--secret-key-file", snap+".key"); err != nil {
		t.Fatalf("restore --secret-key-file: %v %s", err, msg)
	}
	for _, name := range []string{"smtpmux.db", "secret.key"} {
		fi, err := os.Stat(filepath.Join(bData, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != owner || fi.Mode().Perm() != 0o600 {
			t.Errorf("restored %s: uid %d mode %v, want data_dir's owner %d and 0600", name, st.Uid, fi.Mode().Perm(), owner)
		}
	}
	b.start()
	c = b.client(key)
	id, err = sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("after restore"))
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if e := b.waitEmail(id); e["status"] != "sent" {
		t.Fatalf("after the restore elsewhere, the provider's password did not open: %v\n%s", e, b.logText())
	}
}
