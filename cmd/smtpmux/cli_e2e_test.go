package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// cliBin runs the built binary's admin CLI against d with the root key
// in the environment, as an operator's script would, and returns its
// exit code and output.
func cliBin(t *testing.T, d *proc, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "SMTPMUX_URL=http://"+d.httpAddr, "SMTPMUX_API_KEY="+testRootKey)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running %v: %v", args, err)
	}
	if strings.Contains(out.String()+errOut.String(), testRootKey) {
		t.Fatalf("%v printed the API key", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// cliJSON runs a command with --json, requires exit 0 and decodes stdout.
func cliJSON(t *testing.T, d *proc, v any, args ...string) {
	t.Helper()
	code, out, errOut := cliBin(t, d, "", append(args, "--json")...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v: %v in %q", args, err, out)
	}
}

func TestCLIEndToEnd(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	port := strconv.Itoa(up.Port())
	d := newDaemon(t, nil)

	// Create an SMTP provider for the upstream; the table shows it.
	var prov map[string]any
	cliJSON(t, d, &prov, "providers", "create", "--name", "cli-upstream", "--host", up.Host(),
		"--port", port, "--protocol", "none", "--percentage", "100")
	provID, _ := prov["id"].(string)
	if !strings.HasPrefix(provID, "dprov_") || prov["status"] != "active" {
		t.Fatalf("created provider %v", prov)
	}
	code, out, errOut := cliBin(t, d, "", "providers", "list")
	if code != 0 || !regexp.MustCompile(`(?m)^`+provID+` +cli-upstream +smtp +active +`+regexp.QuoteMeta(up.Host()+":"+port)).MatchString(out) {
		t.Fatalf("providers list: exit %d\n%s%s", code, out, errOut)
	}
	// The managed account would take some of the mail; switch it off.
	var all []map[string]any
	cliJSON(t, d, &all, "providers", "list")
	for _, p := range all {
		if p["is_shared"] != true {
			continue
		}
		if code, out, errOut := cliBin(t, d, "", "providers", "deactivate", p["id"].(string)); code != 0 || !strings.Contains(out, "inactive") {
			t.Fatalf("deactivate managed: exit %d %q %q", code, out, errOut)
		}
	}

	// Create a sending key: the table shows the secret once.
	code, out, errOut = cliBin(t, d, "", "keys", "create", "--name", "cli-e2e", "--scope", "providers:"+provID)
	secret := regexp.MustCompile(`(?m)^KEY +(smx_\S+)$`).FindStringSubmatch(out)
	keyID := regexp.MustCompile(`(?m)^ID +(key_\S+)$`).FindStringSubmatch(out)
	if code != 0 || secret == nil || keyID == nil || !strings.Contains(out, "providers:"+provID) || !strings.Contains(errOut, "only this once") {
		t.Fatalf("keys create: exit %d\n%s%s", code, out, errOut)
	}

	// Send through it and read the message back with "emails get".
	c := d.client(secret[1])
	emlID, err := sendOne(c, "app@example.com", []string{"user@example.net"}, msgBody("cli-e2e"))
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	up.WaitMessages(t, 1, 15*time.Second)
	d.waitEmail(emlID)
	code, out, errOut = cliBin(t, d, "", "emails", "get", emlID)
	for _, re := range []string{`(?m)^STATUS +sent$`, `(?m)^ID +` + emlID + `$`, `user@example\.net +sent +250`,
		`(?m)^1 +` + provID + ` +smtp +sent`, `picked ` + provID + ` \(draw \d+ of 100, 1 eligible\)`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("emails get lacks %s", re)
		}
	}
	if code != 0 || t.Failed() {
		t.Fatalf("emails get: exit %d\n%s%s", code, out, errOut)
	}
	var logs []map[string]any
	cliJSON(t, d, &logs, "emails", "logs", "--status", "sent", "--limit", "5")
	if len(logs) != 1 || logs[0]["id"] != emlID {
		t.Fatalf("emails logs: %v", logs)
	}

	// Revoke the key; it shows revoked, and it no longer authenticates
	// anything (used as the CLI's key, that is exit 4).
	code, out, errOut = cliBin(t, d, "", "keys", "revoke", keyID[1])
	if code != 0 || !regexp.MustCompile(`(?m)^STATUS +revoked$`).MatchString(out) {
		t.Fatalf("keys revoke: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = cliBin(t, d, "", "limits", "--key", secret[1])
	if code != exitAuth || !strings.Contains(errOut, "error: authentication_required") {
		t.Fatalf("revoked key: exit %d %q", code, errOut)
	}

	// Errors scripts can tell apart: not found 1, usage 2, unreachable 3.
	if code, _, errOut := cliBin(t, d, "", "providers", "get", "dprov_00000000000000000000000000"); code != exitAPI || !strings.Contains(errOut, "not_found") {
		t.Fatalf("unknown provider: exit %d %q", code, errOut)
	}
	if code, _, _ := cliBin(t, d, "", "keys", "revoke"); code != exitUsage {
		t.Fatalf("missing argument: exit %d", code)
	}
	if code, _, _ := cliBin(t, d, "", "limits", "--url", "http://"+freeAddr(t)); code != exitNetwork {
		t.Fatalf("unreachable: exit %d", code)
	}
}
