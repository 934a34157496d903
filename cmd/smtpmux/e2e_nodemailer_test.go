package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// nodemailerScript sends n messages, each with a text and an HTML part and
// a binary attachment, over a pooled nodemailer transport (STARTTLS
// required, AUTH with the key), and prints one JSON object with the
// replies or the error's response code.
const nodemailerScript = `
const nodemailer = require("nodemailer");
const [host, port, key, n] = process.argv.slice(1);
const t = nodemailer.createTransport({host, port: Number(port), secure: false, requireTLS: true,
  pool: true, maxConnections: 2, maxMessages: 100,
  tls: {rejectUnauthorized: false}, auth: {user: "app", pass: key}});
const attachment = Buffer.alloc(3000, 0).map((_, i) => (i * 7) % 256);
(async () => {
  const replies = [];
  try {
    for (let i = 0; i < Number(n); i++) {
      const info = await t.sendMail({from: "App <app@example.com>", to: "user" + i + "@example.net",
        subject: "nodemailer " + i, messageId: "<node-" + i + "@e2e.test>",
        text: "plain body " + i + "\n.line starting with a dot\n", html: "<p>html body " + i + "</p>",
        attachments: [{filename: "data.bin", content: attachment}]});
      replies.push(info.response);
    }
    console.log(JSON.stringify({replies}));
  } catch (e) {
    console.log(JSON.stringify({replies, code: e.responseCode || 0, error: String(e.message)}));
  } finally {
    t.close();
  }
})();
`

type nodemailerResult struct {
	Replies []string `json:"replies"`
	Code    int      `json:"code"`
	Error   string   `json:"error"`
}

func runNodemailer(t *testing.T, d *proc, key string, n int) nodemailerResult {
	t.Helper()
	node := requirePeer(t, "node")
	modules := testpeer.NodeModules()
	if _, err := os.Stat(filepath.Join(modules, "nodemailer")); modules == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nodemailer is missing from node_modules (run ./scripts/install-test-peers.sh)")
		}
		t.Skip("nodemailer is missing from node_modules (run ./scripts/install-test-peers.sh)")
	}
	host, port, _ := strings.Cut(d.smtpAddr, ":")
	cmd := exec.Command(node, "-e", nodemailerScript, host, port, key, strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var r nodemailerResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
		t.Fatalf("nodemailer printed %q: %v", out, err)
	}
	return r
}

// TestNodemailerThroughRelay: nodemailer, a client nobody here wrote,
// sends MIME mail with attachments over a pooled STARTTLS + AUTH session;
// every message gets the queued reply and reaches the upstream with its
// parts intact. A wrong key gets nodemailer's 535.
func TestNodemailerThroughRelay(t *testing.T) {
	t.Parallel()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	const n = 6
	r := runNodemailer(t, d, key, n)
	if r.Error != "" || len(r.Replies) != n {
		t.Fatalf("nodemailer: %+v", r)
	}
	for i, reply := range r.Replies {
		if !strings.HasPrefix(reply, "250 2.0.0 OK queued as eml_") {
			t.Fatalf("reply %d: %q", i, reply)
		}
	}
	want := make([]byte, 3000)
	for i := range want {
		want[i] = byte(i * 7 % 256)
	}
	msgs := up.WaitMessages(t, n, 15e9)
	seen := map[string]bool{}
	for _, m := range msgs {
		mr, err := mail.CreateReader(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("upstream message does not parse: %v\n%s", err, m.Data)
		}
		mid, _ := mr.Header.MessageID()
		seen[mid] = true
		var text, attached []byte
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", mid, err)
			}
			switch h := p.Header.(type) {
			case *mail.AttachmentHeader:
				attached, _ = io.ReadAll(p.Body)
			case *mail.InlineHeader:
				if ct, _, _ := h.ContentType(); ct == "text/plain" {
					text, _ = io.ReadAll(p.Body)
				}
			}
		}
		if !bytes.Equal(attached, want) {
			t.Errorf("%s: attachment of %d bytes differs from the 3000 sent", mid, len(attached))
		}
		if !strings.Contains(strings.ReplaceAll(string(text), "\r\n", "\n"), "\n.line starting with a dot\n") {
			t.Errorf("%s: text part %q lost its dot line", mid, text)
		}
	}
	for i := 0; i < n; i++ {
		if !seen[fmt.Sprintf("node-%d@e2e.test", i)] {
			t.Errorf("node-%d@e2e.test did not reach the upstream (saw %v)", i, seen)
		}
	}

	bad := runNodemailer(t, d, "smx_live_notARealKey000000000000000000000000000", 1)
	if bad.Code != 535 || len(bad.Replies) != 0 {
		t.Fatalf("wrong key: %+v, want nodemailer's responseCode 535", bad)
	}
}
