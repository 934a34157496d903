package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/admin/webhook"
	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// TestHTTPSendIdempotencyAndWebhook sends over the HTTP Sending API with an
// Idempotency-Key, checks the replay, and receives the signed
// message.delivered webhook at a local endpoint.
func TestHTTPSendIdempotencyAndWebhook(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	var mu sync.Mutex
	var events []map[string]any
	var secret string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhook.VerifyRequest(secret, body, r.Header, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		events = append(events, ev)
	}))
	defer recv.Close()

	d := newDaemon(t, map[string]string{"": "[webhooks]\nallow_private_targets = true\n"})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	code, resp := d.api("POST", "/webhooks", map[string]any{"name": "hook", "url": recv.URL, "event_types": []string{"message.delivered"}})
	if code != 201 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	mu.Lock()
	secret, _ = data(resp)["secret"].(string)
	mu.Unlock()
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhook secret %q", secret)
	}

	send := func(body string) (int, []byte) { return postSend(t, d, key, "order-1234", body) }
	msg := `{"from":{"email":"app@example.com","name":"App"},"to":{"email":"user@example.net"},"subject":"Over HTTP","text_body":"Hello over HTTP."}`
	code1, body1 := send(msg)
	if code1 != 200 || !bytes.Contains(body1, []byte(`"status":"queued"`)) {
		t.Fatalf("send: %d %s", code1, body1)
	}
	code2, body2 := send(msg)
	if code2 != code1 || !bytes.Equal(body1, body2) {
		t.Fatalf("replay differs: %d %s vs %s", code2, body2, body1)
	}
	if code3, _ := send(strings.Replace(msg, "Over HTTP", "Changed", 1)); code3 != 409 {
		t.Fatalf("same key, other body: %d, want 409", code3)
	}
	var sent struct {
		Data struct {
			MessageID string `json:"message_id"`
		}
	}
	json.Unmarshal(body1, &sent)
	if e := d.waitEmail(sent.Data.MessageID); e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}
	msgs := up.WaitMessages(t, 1, 10*time.Second)
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Data, []byte("Hello over HTTP.")) || !bytes.Contains(msgs[0].Data, []byte("Subject: Over HTTP")) {
		t.Fatalf("upstream got %d messages: %+v", len(msgs), msgs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 1 || events[0]["type"] != "message.delivered" {
		t.Fatalf("webhook events %v", events)
	}
	if data, _ := events[0]["data"].(map[string]any); data["message_id"] != sent.Data.MessageID {
		t.Fatalf("event data %v", events[0]["data"])
	}
}

// TestIdempotentReplayAfterKill9: the first answer to an Idempotency-Key is
// durable, so a client retrying after the daemon was killed gets it back
// byte for byte instead of a second message.
func TestIdempotentReplayAfterKill9(t *testing.T) {
	// The upstream refuses MAIL (451) until the daemon is back: otherwise
	// the kill may fall while the body is on its way, and the relay then
	// never resends (SPEC: an uncertain delivery is not repeated), which
	// is another test's subject.
	var back atomic.Bool
	up := testpeer.Start(t, testpeer.Options{Behave: func(step testpeer.Step, _ string) testpeer.Action {
		if step == testpeer.StepMail && !back.Load() {
			return testpeer.Reply(451, "4.3.0", "not yet")
		}
		return testpeer.Continue
	}})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	send := func() (int, []byte) {
		body := `{"from":"app@example.com","to":"user@example.net","subject":"once","text_body":"only once"}`
		return postSend(t, d, key, "retry-after-crash", body)
	}
	code1, body1 := send()
	if code1 != 200 {
		t.Fatalf("send: %d %s", code1, body1)
	}
	d.kill9()
	d.start()
	back.Store(true)
	code2, body2 := send()
	if code2 != 200 || !bytes.Equal(body1, body2) {
		t.Fatalf("after kill -9 the retry got %d %s, want the first answer %s", code2, body2, body1)
	}
	up.WaitMessages(t, 1, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := len(up.Received()); n != 1 {
		t.Fatalf("upstream received %d messages, want 1", n)
	}
}

// TestCurlSend sends with curl, a client nobody here wrote.
func TestCurlSend(t *testing.T) {
	curl := requirePeer(t, "curl")
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	out, err := exec.Command(curl, "-sS", "-H", "Authorization: Bearer "+key, "-H", "Content-Type: application/json",
		"-d", `{"from":{"email":"app@example.com","name":"Curl App"},"to":{"email":"user@example.net"},`+
			`"subject":"via curl","html_body":"<p>Hello <b>curl</b></p>","text_body":"Hello curl"}`,
		"http://"+d.httpAddr+"/api/v1/emails/send").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"status":"queued"`)) {
		t.Fatalf("curl: %v %s", err, out)
	}
	msgs := up.WaitMessages(t, 1, 10*time.Second)
	if !bytes.Contains(msgs[0].Data, []byte("multipart/alternative")) || !bytes.Contains(msgs[0].Data, []byte("Subject: via curl")) {
		t.Fatalf("upstream got:\n%s", msgs[0].Data)
	}
}

// postSend posts body to /emails/send with a sending key and an
// Idempotency-Key and returns the status and the raw reply (replays are
// compared byte for byte).
func postSend(t *testing.T, d *proc, key, idempotencyKey, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+d.httpAddr+"/api/v1/emails/send", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Idempotency-Key", idempotencyKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	checkAPI(t, req, []byte(body), res, b, false)
	return res.StatusCode, b
}
