package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// postfixPeer is a private Postfix instance (its own config, queue and
// data directories under a temp dir; nothing of the system's Postfix is
// used or touched) that listens on addr and knows one local user,
// known@users.test, in a virtual mailbox domain. It accepts every
// recipient of users.test at RCPT and bounces unknown ones afterwards,
// with its own RFC 3464 DSN to the envelope sender, which its transport
// map sends to the smtpmux bounce listener; slow.test goes to a port
// nobody listens on, so mail there is deferred and draws delayed-delivery
// notices after a second.
type postfixPeer struct {
	dir, addr string
	// root is the asRoot prefix its files must be read with.
	root []string
}

// asRoot is the command prefix that runs a command as root: nothing when
// the test is root, else "sudo -n" (an ordinary CI runner's user has
// passwordless sudo). Without either the test skips, and fails under
// CI=true: Postfix's master must start as root (it drops to the postfix
// user itself).
func asRoot(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() == 0 {
		return nil
	}
	if exec.Command("sudo", "-n", "true").Run() == nil {
		return []string{"sudo", "-n"}
	}
	msg := "a private Postfix instance needs root or passwordless sudo to start (postfix -c DIR start)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipped")
	return nil
}

// rootCmd is name with args, run as root (asRoot).
func rootCmd(prefix []string, name string, args ...string) *exec.Cmd {
	if len(prefix) == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command(prefix[0], append(append(prefix[1:len(prefix):len(prefix)], name), args...)...)
}

// startPostfix starts the instance.
func startPostfix(t *testing.T, bounceListener string) *postfixPeer {
	t.Helper()
	bin := requirePeer(t, "postfix")
	root := asRoot(t)
	if _, err := os.Stat("/usr/lib/postfix/sbin/master"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Postfix daemons missing: %v", err)
		}
		t.Skipf("Postfix daemons missing: %v", err)
	}
	dir, err := os.MkdirTemp("", "smtpmux-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	// Postfix's own files in it are root's and postfix's.
	t.Cleanup(func() { rootCmd(root, "rm", "-rf", dir).Run() })
	for _, sub := range []string{"etc", "queue", "data", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Postfix runs its daemons as the postfix user and delivers virtual
	// mail as nobody: they need to reach these directories.
	os.Chmod(dir, 0o755)
	chown(t, root, "postfix", filepath.Join(dir, "data"))
	chown(t, root, "65534", filepath.Join(dir, "mail"))
	addr := freeAddr(t)
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = mx.users.test
mydomain = users.test
myorigin = $myhostname
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_reject_unlisted_recipient = no
virtual_mailbox_domains = users.test
virtual_mailbox_maps = inline:{ known@users.test=users.test/known/ }
virtual_mailbox_base = %[1]s/mail
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
transport_maps = inline:{ bounces.relay.test=smtp:[127.0.0.1]:%[2]s, slow.test=smtp:[127.0.0.1]:%[3]s }
smtp_dns_support_level = disabled
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
`, dir, port(bounceListener), port(freeAddr(t)))
	master := addr + ` inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 1 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`
	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &postfixPeer{dir: dir, addr: addr}
	p.root = root
	if out, err := rootCmd(root, bin, "-c", filepath.Join(dir, "etc"), "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.log())
	}
	t.Cleanup(func() { rootCmd(root, bin, "-c", filepath.Join(dir, "etc"), "abort").Run() })
	// Up when its smtpd answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := gosmtp.Dial(addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not come up on %s:\n%s", addr, p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

func (p *postfixPeer) log() string {
	b, _ := rootCmd(p.root, "cat", filepath.Join(p.dir, "maillog")).Output()
	return string(b)
}

func chown(t *testing.T, root []string, owner, path string) {
	t.Helper()
	if out, err := rootCmd(root, "chown", owner, path).CombinedOutput(); err != nil {
		t.Fatalf("chown %s %s: %v %s", owner, path, err, out)
	}
}

// delivered counts the messages in a virtual user's new/ folder (the
// mailboxes are nobody's, so the listing runs as root).
func (p *postfixPeer) delivered(t *testing.T, user string) int {
	t.Helper()
	out, err := rootCmd(p.root, "ls", "-1", filepath.Join(p.dir, "mail", "users.test", user, "new")).Output()
	if err != nil {
		return 0
	}
	return len(strings.Fields(string(out)))
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// TestPostfixBounceSuppresses is issue 16's test against a peer nobody
// here wrote: smtpmux relays through a private Postfix that accepts mail
// for an unknown user and then bounces it with its own DSN to the VERP
// return path; Postfix delivers that DSN to smtpmux's bounce listener,
// the recipient lands on the suppression list and the next send to it is
// refused at RCPT. A known user's mail is delivered and suppresses no
// one, and Postfix's delayed-delivery notice is not taken for a failure.
func TestPostfixBounceSuppresses(t *testing.T) {
	d, listener := bounceDaemon(t, "")
	pf := startPostfix(t, listener)
	_, key := d.setupRelay(map[string]any{"name": "postfix", "smtp_host": "127.0.0.1", "smtp_port": atoi(t, port(pf.addr)), "smtp_protocol": "none"})
	c := d.client(key)
	defer c.Close()

	known, err := sendOne(c, "s@example.com", []string{"known@users.test"}, msgBody("known"))
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := sendOne(c, "s@example.com", []string{"nobody@users.test"}, msgBody("unknown"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{known, unknown} {
		if e := d.waitEmail(id); e["status"] != "sent" { // Postfix took both at RCPT
			t.Fatalf("email %v", e)
		}
	}
	// Postfix's DSN reaches the listener and suppresses the address.
	deadline := time.Now().Add(30 * time.Second)
	var sup map[string]any
	for {
		code, resp := d.api("GET", "/suppressions/nobody@users.test", nil)
		if code == 200 {
			sup = data(resp)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no suppression after Postfix's bounce.\npostfix log:\n%s\nsmtpmux log:\n%s", pf.log(), d.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sup["reason"] != "hard_bounce" || sup["source"] != "dsn" || sup["message_id"] != unknown {
		t.Fatalf("suppression %v", sup)
	}
	_, e := d.api("GET", "/emails/"+unknown, nil)
	fb, _ := recipientOf(t, data(e), "nobody@users.test")["feedback"].([]any)
	if len(fb) != 1 || fb[0].(map[string]any)["status"] != "5.1.1" || !strings.Contains(fmt.Sprint(fb[0].(map[string]any)["diagnostic"]), "unknown user") {
		t.Fatalf("feedback %v", fb)
	}
	if _, err := sendOne(c, "s@example.com", []string{"nobody@users.test"}, msgBody("again")); smtpCode(err) != 550 {
		t.Fatalf("send after Postfix's bounce: %v, want 550", err)
	}
	c.Reset()
	if code, _ := d.api("GET", "/suppressions/known@users.test", nil); code != 404 {
		t.Fatal("the known user was suppressed")
	}
	if n := pf.delivered(t, "known"); n != 1 {
		t.Fatalf("known user's mailbox has %d messages", n)
	}

	// Delayed: Postfix cannot reach slow.test and sends a delay notice.
	late, err := sendOne(c, "s@example.com", []string{"late@slow.test"}, msgBody("late"))
	if err != nil {
		t.Fatal(err)
	}
	d.waitEmail(late)
	deadline = time.Now().Add(60 * time.Second)
	for !strings.Contains(d.metrics(), `smtpmux_bounce_reports_total{kind="dsn",outcome="ignored"}`) {
		if time.Now().After(deadline) {
			t.Fatalf("no delay notice reached the listener.\npostfix log:\n%s", pf.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(pf.log(), "sender delay notification") {
		t.Fatalf("the report the listener ignored was not Postfix's delay notice:\n%s", pf.log())
	}
	_, e = d.api("GET", "/emails/"+late, nil)
	if fb, _ := recipientOf(t, data(e), "late@slow.test")["feedback"].([]any); len(fb) != 0 {
		t.Fatalf("a delay notice was recorded as %v", fb)
	}
	if code, _ := d.api("GET", "/suppressions/late@slow.test", nil); code != 404 {
		t.Fatal("a delay notice suppressed the recipient")
	}
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
