package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := loadConfig("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := defaults()
	if cfg.file.SMTP.MaxMessageBytes != d.SMTP.MaxMessageBytes || len(cfg.retrySchedule) != 3 ||
		cfg.file.HTTP.Listen != "127.0.0.1:8025" || cfg.file.Managed.DailyLimit != 50 {
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
		{"syntax error", "[smtp\nlisten = 1", "line"},
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
