package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/store"
)

// fillDisk writes path until the file system answers ENOSPC and returns
// the bytes written. Nothing else on the file system is touched.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte("filler\n"), (64<<10)/7+1)
	var total int64
	for _, chunk := range []int{64 << 10, 4 << 10, 1} {
		for {
			n, err := f.Write(buf[:chunk])
			total += int64(n)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			break
		}
	}
	return total
}

func availBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}

// newDaemonOnTmpfs is newDaemon with data_dir on a fresh tmpfs of sizeMiB.
func newDaemonOnTmpfs(t *testing.T, mode mountMode, sizeMiB int, extra map[string]string) *proc {
	t.Helper()
	d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t)}
	dataDir := filepath.Join(d.dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, mode, dataDir, sizeMiB) // unmounted after the daemon stops (cleanups run last first)
	return startProc(t, d, extra)
}

// diskFullMsg is a message with a Message-ID the upstream can be searched
// for, and a body of about size bytes.
func diskFullMsg(mid string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: app@example.com\r\nTo: u@example.net\r\nSubject: disk full %s\r\nMessage-ID: <%s>\r\n\r\n", mid, mid)
	line := "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// isDiskFullReply reports whether err is the SMTP reply 452 4.3.1.
func isDiskFullReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == 452 && se.EnhancedCode == (smtp.EnhancedCode{4, 3, 1})
}

// rawAPI is a Management API call that returns the status and the raw body
// (the harness's api fails the test on a non-JSON answer; here that is the
// assertion).
func (d *proc) rawAPI(key, method, path string, body any) (int, []byte) {
	d.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "http://"+d.httpAddr+"/api/v1"+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v (did the daemon die?)\n%s", method, path, err, d.logText())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	checkAPI(d.t, req, b, resp, raw, false)
	return resp.StatusCode, raw
}

// TestDiskFullRefusesAndKeeps is issue 8's disk-full suite: with data_dir
// on a small tmpfs filled to the last block, the relay answers new mail
// 452 4.3.1 (small bodies kept in bbolt and large ones spooled to files
// alike), stays up, loses nothing it accepted before, delivers it once the
// space and the upstream are back, accepts mail again, and its store opens
// cleanly after a kill -9.
func TestDiskFullRefusesAndKeeps(t *testing.T) {
	mode, here := withMountPrivilege(t)
	if !here {
		return
	}
	const large = store.InlineLimit + 64<<10 // spooled to a file
	up := testpeer.Start(t, testpeer.Options{})
	// The upstream defers everything until told otherwise, so accepted
	// mail stays queued (a 451 is a temporary reply: it does not trip the
	// breaker). The first retry comes 3 s later, after the disk-full
	// window: this test is about the store and the replies; what the
	// scheduler does while its own writes fail is TestDiskFullSchedulerBacksOff's.
	up.Always(testpeer.StepMail, "", testpeer.Reply(451, "4.3.0", "upstream unavailable"))
	d := newDaemonOnTmpfs(t, mode, 8, map[string]string{"delivery": `retry_schedule = ["3s", "1s", "1s", "1s", "1s", "1s"]`})
	dataDir := filepath.Join(d.dir, "data")
	spoolDir := filepath.Join(dataDir, "spool")
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})

	accepted := map[string]string{} // Message-ID → eml id: everything that got a 250
	send := func(c *smtp.Client, mid string, size int) error {
		t.Helper()
		id, err := sendOne(c, "app@example.com", []string{"u@example.net"}, diskFullMsg(mid, size))
		if err == nil {
			accepted[mid] = id
		}
		return err
	}

	// Before the disk fills: small and large mail is accepted and queued.
	c := d.client(key)
	for i, size := range []int{2 << 10, 2 << 10, large, 2 << 10, large} {
		if err := send(c, fmt.Sprintf("before-%d@e2e.test", i), size); err != nil {
			t.Fatalf("before the disk filled, message %d: %v", i, err)
		}
	}
	spooledBefore := countDir(t, spoolDir)

	filler := filepath.Join(dataDir, "filler")
	fullAt := time.Now()
	n := fillDisk(t, filler)
	t.Logf("filler: %d bytes; %d bytes left", n, availBytes(t, dataDir))

	// Small bodies go into bbolt's commit. bbolt reuses pages its earlier
	// commits freed, which are already on disk, so a few small messages
	// may still fit in the file; the first commit that needs a new page
	// fails, and from then on every one does.
	var fitted int
	for i := 0; ; i++ {
		err := send(c, fmt.Sprintf("full-small-%d@e2e.test", i), 2<<10)
		if err == nil {
			if fitted++; fitted == 50 {
				t.Fatalf("50 small messages accepted on a full disk")
			}
			continue
		}
		if !isDiskFullReply(err) {
			t.Fatalf("small message on a full disk: got %v, want 452 4.3.1\n%s", err, d.logText())
		}
		break
	}
	t.Logf("%d small messages fitted in pages bbolt had freed before the first 452", fitted)
	for i := 0; i < 3; i++ {
		if err := send(c, fmt.Sprintf("full-small-again-%d@e2e.test", i), 2<<10); !isDiskFullReply(err) {
			t.Fatalf("small message %d after the first 452: got %v, want 452 4.3.1", i, err)
		}
	}
	// Large bodies stream to a spool file, which cannot grow.
	for i := 0; i < 2; i++ {
		if err := send(c, fmt.Sprintf("full-large-%d@e2e.test", i), large); !isDiskFullReply(err) {
			t.Fatalf("large message %d on a full disk: got %v, want 452 4.3.1\n%s", i, err, d.logText())
		}
	}
	// The session survives its 452s.
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET after 452: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("NOOP after 452: %v", err)
	}
	if got := countDir(t, spoolDir); got != spooledBefore {
		t.Errorf("spool holds %d files after the refused large messages, want %d (a refused body leaked)", got, spooledBefore)
	}

	// The daemon stays up and reads still work.
	resp, err := http.Get("http://" + d.httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("healthz on a full disk: %v\n%s", err, d.logText())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz on a full disk: %d", resp.StatusCode)
	}
	for mid, id := range accepted {
		if e := d.email(id); e["status"] != "pending" {
			t.Fatalf("%s (%s) on a full disk: %v", mid, id, e)
		}
	}
	// HTTP writes that need space answer a 503 that says why, without
	// internals. A large HTTP send must spool, so it always needs space.
	code, raw := d.rawAPI(key, "POST", "/emails/send", map[string]any{
		"from": "app@example.com", "to": "u@example.net", "subject": "http on a full disk",
		"text_body": strings.Repeat("x", large)})
	checkDiskFullAPI(t, "large HTTP send on a full disk", code, raw)
	// Management writes: a key is small and may fit in freed pages, but
	// each adds records, and one soon needs a new page.
	var keyCodes []int
	for i := 0; i < 40; i++ {
		code, raw := d.rawAPI(testRootKey, "POST", "/api-keys", map[string]any{"name": fmt.Sprintf("full-%d", i), "type": "sending"})
		keyCodes = append(keyCodes, code)
		if code != 201 {
			checkDiskFullAPI(t, "POST /api-keys on a full disk", code, raw)
			break
		}
	}
	t.Logf("POST /api-keys on the full disk: %v", keyCodes)
	if keyCodes[len(keyCodes)-1] == 201 {
		t.Errorf("40 API keys created on a full disk")
	}
	if code, _ := d.rawAPI(testRootKey, "GET", "/providers", nil); code != 200 {
		t.Errorf("GET /providers on a full disk: %d", code)
	}

	// Space comes back: new mail is accepted again; then the upstream
	// comes back: everything accepted is delivered, once.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if window := time.Since(fullAt); window > 2500*time.Millisecond {
		t.Logf("the disk was full for %v: retries may have run into it", window)
	}
	up.ClearScript()
	for i, size := range []int{2 << 10, large} {
		if err := send(c, fmt.Sprintf("after-%d@e2e.test", i), size); err != nil {
			t.Fatalf("after space was freed, message %d: %v", i, err)
		}
	}
	if code, raw := d.rawAPI(testRootKey, "POST", "/api-keys", map[string]any{"name": "after", "type": "sending"}); code != 201 {
		t.Fatalf("POST /api-keys after space was freed: %d %s", code, raw)
	}
	for mid, id := range accepted {
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("%s (%s): %v", mid, id, e)
		}
	}
	checkDelivered(t, up, accepted)
	delivered := len(accepted)

	// Mail queued at a kill -9 survives it; the file the crash left is
	// consistent, and the store opens cleanly on it.
	up.Always(testpeer.StepMail, "", testpeer.Reply(451, "4.3.0", "upstream unavailable"))
	for i, size := range []int{2 << 10, large} {
		if err := send(c, fmt.Sprintf("before-kill-%d@e2e.test", i), size); err != nil {
			t.Fatalf("before the kill, message %d: %v", i, err)
		}
	}
	c.Close()
	d.kill9()
	if err := store.CheckFile(filepath.Join(dataDir, "smtpmux.db")); err != nil {
		t.Fatalf("the store after kill -9: %v", err)
	}
	logBefore := len(d.logText())
	d.start()
	if restartLog := d.logText()[logBefore:]; strings.Contains(restartLog, `"level":"ERROR"`) || strings.Contains(restartLog, "panic") {
		t.Fatalf("restart on the same data_dir:\n%s", restartLog)
	}
	up.ClearScript()
	for mid, id := range accepted {
		if e := d.waitEmail(id); e["status"] != "sent" {
			t.Fatalf("after the restart, %s (%s): %v", mid, id, e)
		}
	}
	checkDelivered(t, up, accepted)
	if got := countDir(t, spoolDir); got != 0 {
		// Delivered large bodies are retained as spool files for [retention]
		// body; they must belong to accepted messages.
		for _, e := range mustReadDir(t, spoolDir) {
			if !slices.Contains(slices.Collect(maps.Values(accepted)), e.Name()) {
				t.Errorf("spool file %s belongs to no accepted message", e.Name())
			}
		}
	}
	t.Logf("%d messages accepted (%d before the kill), each delivered once; disk full answered 452 4.3.1 and 503",
		len(accepted), delivered)
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestDiskFullAfterSpool separates the two writes of a large message: the
// spool directory is its own tmpfs with room, the store's file system is
// full, so the body is spooled and the commit then fails. SMTP and HTTP
// sends alike must refuse (452 4.3.1 / 503) and remove the spool file: it
// belongs to no message, and on a nearly full disk it would hold the space
// until the next start.
func TestDiskFullAfterSpool(t *testing.T) {
	mode, here := withMountPrivilege(t)
	if !here {
		return
	}
	const large = store.InlineLimit + 64<<10
	up := testpeer.Start(t, testpeer.Options{})
	d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t)}
	dataDir := filepath.Join(d.dir, "data")
	spoolDir := filepath.Join(dataDir, "spool")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, mode, dataDir, 4)
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, mode, spoolDir, 16) // unmounted before dataDir, after the daemon stops
	startProc(t, d, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	// Mail accepted while the disk fills is delivered later; hold it.
	up.Always(testpeer.StepMail, "", testpeer.Reply(451, "4.3.0", "upstream unavailable"))
	fillDisk(t, filepath.Join(dataDir, "filler"))

	accepted := map[string]string{}
	c := d.client(key)
	defer c.Close()
	// Pages bbolt freed earlier may take a commit or two.
	for i := 0; ; i++ {
		mid := fmt.Sprintf("spooled-smtp-%d@e2e.test", i)
		id, err := sendOne(c, "app@example.com", []string{"u@example.net"}, diskFullMsg(mid, large))
		if err == nil {
			accepted[mid] = id
			if i == 20 {
				t.Fatal("20 large messages committed on a full disk")
			}
			continue
		}
		if !isDiskFullReply(err) {
			t.Fatalf("large SMTP message, store full, spool free: got %v, want 452 4.3.1", err)
		}
		break
	}
	if n := countDir(t, spoolDir); n != len(accepted) {
		t.Fatalf("spool holds %d files for %d accepted messages: the refused body's file leaked", n, len(accepted))
	}
	for i := 0; ; i++ {
		code, raw := d.rawAPI(key, "POST", "/emails/send", map[string]any{
			"from": "app@example.com", "to": "u@example.net", "subject": fmt.Sprintf("spooled http %d", i),
			"text_body": strings.Repeat("spooled over http\n", large/18+1)})
		if code == 200 {
			var env struct {
				Data struct {
					MessageID string `json:"message_id"`
				}
			}
			json.Unmarshal(raw, &env)
			accepted[fmt.Sprint("http-", i)] = env.Data.MessageID
			if i == 20 {
				t.Fatal("20 large HTTP sends committed on a full disk")
			}
			continue
		}
		checkDiskFullAPI(t, "large HTTP send, store full, spool free", code, raw)
		break
	}
	if n := countDir(t, spoolDir); n != len(accepted) {
		t.Fatalf("spool holds %d files for %d accepted messages: the refused HTTP body's file leaked", n, len(accepted))
	}
	for mid, id := range accepted {
		if e := d.email(id); e["status"] != "pending" {
			t.Fatalf("%s (%s): %v", mid, id, e)
		}
	}
	t.Logf("%d large messages fitted in pages bbolt had freed before the refusals", len(accepted))
}

// checkDiskFullAPI asserts a clear JSON 5xx for a write that hit the full disk.
func checkDiskFullAPI(t *testing.T, what string, code int, raw []byte) {
	t.Helper()
	var env struct {
		OK    bool `json:"ok"`
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			Retryable bool   `json:"retryable"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s on a full disk: %d, not JSON: %q", what, code, raw)
	}
	t.Logf("%s: %d %s", what, code, raw)
	if code != http.StatusServiceUnavailable || env.OK || env.Error.Code != "service_unavailable" || !env.Error.Retryable ||
		!strings.Contains(env.Error.Message, "out of storage space") {
		t.Errorf("%s: %d %s, want a retryable 503 service_unavailable that names the full disk", what, code, raw)
	}
	for _, leak := range []string{"no space left", "/", "bbolt", "write "} {
		if strings.Contains(env.Error.Message, leak) {
			t.Errorf("%s: message %q leaks an internal error (%q)", what, env.Error.Message, leak)
		}
	}
}

// checkDelivered asserts the upstream accepted each message exactly once.
func checkDelivered(t *testing.T, up *testpeer.Server, accepted map[string]string) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range up.Messages() {
		if m.Accepted() {
			if mm := midRe.FindSubmatch(m.Data); mm != nil {
				seen[string(mm[1])]++
			}
		}
	}
	for mid := range accepted {
		if seen[mid] != 1 {
			t.Errorf("%s delivered %d times, want once", mid, seen[mid])
		}
	}
	for mid, n := range seen {
		if _, ok := accepted[mid]; !ok {
			t.Errorf("%s delivered %d times but was never accepted (it got a 452)", mid, n)
		}
	}
}

func countDir(t *testing.T, dir string) int {
	t.Helper()
	return len(mustReadDir(t, dir))
}

// TestDiskFullSchedulerBacksOff is the scheduler's side of a full disk:
// messages stay due while every write of the scheduler fails. It must
// neither spin (a refused claim retried at once, thousands of times a
// second) nor strand them (an outcome that could not be recorded left in
// flight until a restart): once space comes back, they are delivered
// without a restart.
func TestDiskFullSchedulerBacksOff(t *testing.T) {
	mode, here := withMountPrivilege(t)
	if !here {
		return
	}
	up := testpeer.Start(t, testpeer.Options{})
	// A long reply: each attempt records it, so the records outgrow the
	// pages bbolt has free soon after the disk is full (with a short one
	// that took more than 10 s in one run of five).
	up.Always(testpeer.StepMail, "", testpeer.Reply(451, "4.3.0", strings.TrimSpace(strings.Repeat("upstream unavailable, try again later; ", 12))))
	// Retries every 500 ms, enough of them (80: 40 s) that no message uses
	// them up before the disk is full and the store refuses a write.
	steps := strings.TrimSuffix(strings.Repeat(`"500ms", `, 80), ", ")
	d := newDaemonOnTmpfs(t, mode, 4, map[string]string{"delivery": "retry_schedule = [" + steps + "]"})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	defer c.Close()
	const queued = 10
	var ids []string
	for i := 0; i < queued; i++ {
		id, err := sendOne(c, "app@example.com", []string{"u@example.net"}, diskFullMsg(fmt.Sprintf("backoff-%d@e2e.test", i), 2<<10))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	filler := filepath.Join(d.dir, "data", "filler")
	fillDisk(t, filler)
	fullAt := time.Now()
	// Each retry appends an attempt to its message's record; soon one
	// needs a page bbolt has not freed before, and the store refuses it.
	// Which scheduler write meets it first is chance: a claim, or an
	// attempt's outcome (the message then stays in flight, and is not
	// claimed again, while its outcome is retried).
	refusedWrites := func() int {
		log := d.logText()
		n := 0
		for _, msg := range []string{`"msg":"claiming message failed"`, `"msg":"recording attempt result failed; retrying"`, `"msg":"requeue failed; retrying"`} {
			n += strings.Count(log, msg)
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for refusedWrites() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler had no write refused in 20 s on a full disk")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("first refused write %v after the disk was full", time.Since(fullAt).Round(10*time.Millisecond))
	time.Sleep(2 * time.Second)
	window := time.Since(fullAt)
	n := refusedWrites()
	t.Logf("%d refused scheduler writes in the %v the disk was full, for %d queued messages (%d claims)",
		n, window.Round(time.Millisecond), queued, strings.Count(d.logText(), `"msg":"claiming message failed"`))
	// Due every 500 ms, a message whose write was refused should wait
	// about as long before the next try (the store back-off starts at
	// 500 ms and doubles): a few per message and second.
	if limit := int(5 * queued * window.Seconds()); n > limit {
		t.Errorf("%d refused writes in %v for %d queued messages: the scheduler does not back off", n, window, queued)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	up.ClearScript()
	// An outcome the store refused is written again within the store
	// back-off (at most 5 s), then the message's retry step (500 ms).
	deadline = time.Now().Add(15 * time.Second)
	for _, id := range ids {
		for {
			e := d.email(id)
			if e["status"] == "sent" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not delivered 15 s after space came back (state %v, %d attempts)", id, e["status"], len(e["attempts"].([]any)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
