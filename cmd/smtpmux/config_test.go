package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := loadConfig("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := defaults()
	if cfg.file.SMTP.MaxMessageBytes != d.SMTP.MaxMessageBytes || len(cfg.retrySchedule) != 3 ||
		cfg.file.HTTP.Listen != "127.0.0.1:8025" || cfg.file.Managed.DailyLimit != 50 ||
		cfg.file.SMTP.MaxConnsPerIP != d.SMTP.MaxConnsPerIP || cfg.file.SMTP.PreAuthTimeout != d.SMTP.PreAuthTimeout ||
		cfg.file.SMTP.MaxJunkCommands != d.SMTP.MaxJunkCommands || cfg.file.Retention != d.Retention {
		t.Fatalf("example config differs from the defaults it documents: %+v", cfg.file)
	}
}

func TestCheckConfig(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		wantErr string // substring of the message; "" means valid
	}{
		{"empty file uses defaults", "", ""},
		{"unknown top-level key", "colour = \"blue\"", "colour: unknown key"},
		{"unknown nested key", "[smtp]\nlisten_port = 25", "smtp.listen_port: unknown key"},
		{"wrong type", "[smtp]\nmax_recipients = \"many\"", "max_recipients"},
		{"bad duration", "[smtp]\nread_timeout = \"soon\"", "smtp.read_timeout"},
		{"no read timeout", "[smtp]\nread_timeout = \"0s\"", "smtp.read_timeout: must be more than 0"},
		{"bad retry step", "[delivery]\nretry_schedule = [\"5m\", \"-1h\"]", "delivery.retry_schedule"},
		{"empty retry schedule", "[delivery]\nretry_schedule = []", "delivery.retry_schedule"},
		{"bad listen address", "[smtp]\nlisten = [\"localhost\"]", "smtp.listen"},
		{"no listeners", "[smtp]\nlisten = []", "smtp.listen"},
		{"short secret", "secret_key = \"short\"", "secret_key"},
		{"bad root key", "bootstrap_root_key = \"hunter2\"", "bootstrap_root_key"},
		{"cert without key", "[smtp]\ntls_cert_file = \"/x.pem\"", "smtp.tls_cert_file"},
		{"huge message size", "[smtp]\nmax_message_bytes = 999999999999", "smtp.max_message_bytes"},
		{"unknown backend", "[managed]\nbackend = \"carrier-pigeon\"", "managed.backend"},
		{"zero rate limit", "[limits]\nsends_per_minute = 0", "limits.sends_per_minute"},
		{"move delay in days", "[retention]\nmove_after = \"1d\"", ""},
		{"move delay garbage", "[retention]\nmove_after = \"soon\"", "retention.move_after"},
		{"move delay missing", "[retention]\nmove_after = \"\"", "retention.move_after"},
		{"move delay too short", "[retention]\nmove_after = \"500ms\"", "retention.move_after"},
		{"move delay too long", "[retention]\nmove_after = \"2d\"", "retention.move_after"},
		{"move delay negative", "[retention]\nmove_after = \"-1m\"", "retention.move_after"},
		{"syntax error", "[smtp\nlisten = 1", "line"},
		{"insecure auth on loopback", "[smtp]\nallow_insecure_auth = true\nlisten = [\"127.0.0.1:2525\", \"[::1]:2525\", \"localhost:2526\"]", ""},
		{"insecure auth on every interface", "[smtp]\nallow_insecure_auth = true\nlisten = [\"127.0.0.1:2525\", \"0.0.0.0:587\"]", "smtp.allow_insecure_auth"},
		{"insecure auth on an empty host", "[smtp]\nallow_insecure_auth = true\nlisten = [\":587\"]", "smtp.allow_insecure_auth"},
		{"insecure auth on a LAN address", "[smtp]\nallow_insecure_auth = true\nlisten = [\"192.168.1.10:587\"]", "smtp.allow_insecure_auth"},
		{"per-IP cap over the global cap", "[smtp]\nmax_connections = 10\nmax_connections_per_ip = 11", "smtp.max_connections_per_ip"},
		{"per-IP cap zero", "[smtp]\nmax_connections_per_ip = 0", "smtp.max_connections_per_ip"},
		{"negative junk limit", "[smtp]\nmax_junk_commands = -1", "smtp.max_junk_commands"},
		{"bad pre-auth timeout", "[smtp]\npre_auth_timeout = \"soon\"", "smtp.pre_auth_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(path, []byte(tc.toml), 0o600)
			var out, errOut bytes.Buffer
			code := run([]string{"check-config", "--config", path}, &out, &errOut)
			if tc.wantErr == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
				return
			}
			if code != 1 || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 1 naming %q", code, errOut.String(), tc.wantErr)
			}
		})
	}
}

// TestServeRefusesInsecureAuthOffLoopback: serve runs the same validation
// as check-config, so a daemon that would take AUTH in clear text from the
// network does not start (nothing is opened or bound first).
func TestServeRefusesInsecureAuthOffLoopback(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	os.WriteFile(path, []byte("data_dir = \""+filepath.Join(dir, "data")+"\"\n[smtp]\nallow_insecure_auth = true\nlisten = [\"0.0.0.0:0\"]\n"), 0o600)
	// The real binary, so that a serve that does start is stopped (and
	// the test fails) instead of running on.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "serve", "--config", path)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("serve started with allow_insecure_auth on 0.0.0.0; stderr %q", errOut.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut.String(), "smtp.allow_insecure_auth") {
		t.Fatalf("serve: %v, stderr %q; want exit 1 naming smtp.allow_insecure_auth", err, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Fatalf("serve created its data directory before refusing the config (%v)", err)
	}
}

func TestSecretsFromEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte(`secret_key = "from-file-0123456789"`), 0o600)
	t.Setenv("SMTPMUX_SECRET_KEY", "from-env-0123456789abc")
	cfg, err := loadConfig(path)
	if err != nil || cfg.secretKey != "from-env-0123456789abc" {
		t.Fatalf("env must override the file: %v %q", err, cfg.secretKey)
	}
}

func TestCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "smtpmux ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no command exit %d", code)
	}
	if code := run([]string{"check-config", "--config", "/nonexistent/x.toml"}, &out, &errOut); code != 1 {
		t.Fatalf("missing file exit %d", code)
	}
}
