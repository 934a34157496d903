package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigAddresses: check-config (the built binary) refuses a
// listen address serve could not bind, naming the key and the fault, and
// accepts the forms net.Listen takes.
func TestCheckConfigAddresses(t *testing.T) {
	tests := []struct {
		toml    string
		wantErr string // "" means valid
	}{
		{"[http]\nlisten = \"127.0.0.1:80250\"", "http.listen: \"127.0.0.1:80250\": port 80250 is out of range (0-65535)"},
		{"[smtp]\nlisten = [\"127.0.0.1:-1\"]", "smtp.listen: \"127.0.0.1:-1\": port -1 is out of range"},
		{"[smtp]\nlisten_tls = [\"127.0.0.1:smtps-typo\"]", "smtp.listen_tls: \"127.0.0.1:smtps-typo\": \"smtps-typo\" is not a port number"},
		{"[http]\nlisten = \"127.0.0.300:8025\"", "http.listen: \"127.0.0.300:8025\": \"127.0.0.300\" is neither an IP address nor a host name"},
		{"[http]\nlisten = \"my_host:8025\"", "is neither an IP address nor a host name"},
		{"[tracking]\nlisten = \"127.0.0.1:99999\"", "tracking.listen"},
		{"[http]\nlisten = \"localhost:8025\"", ""},
		{"[http]\nlisten = \":8025\"", ""},
		{"[http]\nlisten = \"[::1]:8025\"", ""},
		{"[smtp]\nlisten = [\"0.0.0.0:25\", \"relay.example.com:587\"]", ""},
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), "c.toml")
		os.WriteFile(path, []byte(tc.toml), 0o600)
		out, err := exec.Command(binPath, "check-config", "--config", path).CombinedOutput()
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%q: %v %s, want it accepted", tc.toml, err, out)
			}
			continue
		}
		if err == nil || !strings.Contains(string(out), tc.wantErr) {
			t.Errorf("%q: %v %q, want a refusal naming %q", tc.toml, err, out, tc.wantErr)
		}
	}
}
