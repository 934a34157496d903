package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

var emlRe = regexp.MustCompile(`OK queued as (eml_[0-9a-z]{24}(?:-[a-z0-9][a-z0-9-]*)?)`)

// upstreamWithTLS starts a STARTTLS+AUTH recording upstream and returns it
// with the config lines that make the daemon trust its certificate.
func upstreamWithTLS(t *testing.T) (*testpeer.Server, map[string]string) {
	up := testpeer.Start(t, testpeer.Options{TLS: testpeer.TLSStartTLS, Username: "relay", Password: "up-secret-pw"})
	ca := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(ca, up.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return up, map[string]string{"delivery": fmt.Sprintf("upstream_ca_file = %q", ca)}
}

func smtpProvider(up *testpeer.Server, protocol string) map[string]any {
	return map[string]any{"name": "upstream", "type": "smtp", "smtp_host": up.Host(), "smtp_port": up.Port(),
		"smtp_protocol": protocol, "smtp_username": "relay", "smtp_password": "up-secret-pw"}
}

// crlf makes a message with CRLF line ends, as it travels over SMTP.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

const e2eMessage = `From: App <app@example.com>
To: user@example.net
Subject: e2e %s
Message-ID: <%s@example.com>
Content-Type: text/plain; charset=utf-8

Hello from %s.
.a line starting with a dot
Last line.
`

func TestSwaksThroughSTARTTLSAndAuth(t *testing.T) {
	swaks := requirePeer(t, "swaks")
	up, extra := upstreamWithTLS(t)
	d := newDaemon(t, extra)
	_, key := d.setupRelay(smtpProvider(up, "starttls"))

	body := crlf(fmt.Sprintf(e2eMessage, "swaks", "swaks-1", "swaks"))
	file := filepath.Join(t.TempDir(), "msg.eml")
	os.WriteFile(file, body, 0o600)
	out, err := exec.Command(swaks, "--server", d.smtpAddr, "--tls", "--auth", "PLAIN",
		"--auth-user", "ignored", "--auth-password", key,
		"--from", "app@example.com", "--to", "user@example.net,other@example.org",
		"--data", "@"+file, "--timeout", "20").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	m := emlRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("swaks output lacks the queued reply:\n%s", out)
	}
	msgs := up.WaitMessages(t, 1, 15e9)
	got := msgs[0]
	// swaks always writes CRLF before the terminating dot, so what it sent
	// (and the relay must pass on unchanged) is the file plus one CRLF.
	if sent := append(body, "\r\n"...); !bytes.Equal(got.Data, sent) {
		t.Fatalf("upstream bytes differ:\n got %q\nwant %q", got.Data, sent)
	}
	if got.From != "app@example.com" || strings.Join(got.To, ",") != "user@example.net,other@example.org" || !got.TLS || got.AuthUser != "relay" {
		t.Fatalf("upstream envelope %+v", got)
	}
	email := d.waitEmail(string(m[1]))
	if email["status"] != "sent" {
		t.Fatalf("email log: %v", email)
	}
	if strings.Contains(d.logText(), key) || strings.Contains(d.logText(), "up-secret-pw") {
		t.Fatal("a secret appears in the daemon log")
	}
}

const smtplibScript = `
import smtplib, ssl, sys
host, port, key, mech, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("python.test")
s.starttls(context=ctx)
s.ehlo("python.test")
s.user, s.password = "ignored", key
s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login)
body = open(path, "rb").read()
s.mail("app@example.com")
s.rcpt("user@example.net")
code, resp = s.data(body)
print(code, resp.decode())
s.quit()
`

func TestPythonSmtplibPlainAndLogin(t *testing.T) {
	py := requirePeer(t, "python3")
	up, extra := upstreamWithTLS(t)
	d := newDaemon(t, extra)
	_, key := d.setupRelay(smtpProvider(up, "starttls"))
	for i, mech := range []string{"PLAIN", "LOGIN"} {
		body := crlf(fmt.Sprintf(e2eMessage, mech, "py-"+mech, "smtplib"))
		file := filepath.Join(t.TempDir(), "msg.eml")
		os.WriteFile(file, body, 0o600)
		host, port, _ := strings.Cut(d.smtpAddr, ":")
		out, err := exec.Command(py, "-c", smtplibScript, host, port, key, mech, file).CombinedOutput()
		if err != nil {
			t.Fatalf("smtplib %s: %v\n%s", mech, err, out)
		}
		if !strings.HasPrefix(string(out), "250 2.0.0 OK queued as eml_") {
			t.Fatalf("smtplib %s got %q", mech, out)
		}
		msgs := up.WaitMessages(t, i+1, 15e9)
		if !bytes.Equal(msgs[i].Data, body) {
			t.Fatalf("%s: upstream bytes differ:\n got %q\nwant %q", mech, msgs[i].Data, body)
		}
	}
	// A wrong key is refused with 535.
	out, _ := exec.Command(py, "-c", smtplibScript, "127.0.0.1", strings.Split(d.smtpAddr, ":")[1],
		"smx_mbx_notARealKey00000000000000000000000000000", "PLAIN", "/dev/null").CombinedOutput()
	if !strings.Contains(string(out), "535") {
		t.Fatalf("wrong key: smtplib said %q, want a 535", out)
	}
}
