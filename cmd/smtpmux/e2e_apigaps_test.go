package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/testpeer"
)

// apiHeaders is a Management API call with extra request headers that
// returns the status, the response headers and the raw body.
func (d *proc) apiHeaders(key, method, path string, body any, hdr map[string]string) (int, http.Header, []byte) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+d.httpAddr+"/api/v1"+path, r)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// TestConditionalGetNotModified: (and X-RateLimit-Reset's form) a
// single-resource GET's weak ETag sent
// back in If-None-Match answers 304 with no body and the ETag, for the
// strong form of the tag and in a list too; after a change the old tag
// gets the 200 with the new ETag; a list endpoint (no ETag) ignores it.
func TestConditionalGetNotModified(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, nil)
	id := d.must(201, "POST", "/delivery-groups", map[string]any{"name": "cond"})["id"].(string)
	path := "/delivery-groups/" + id

	code, h, _ := d.apiHeaders(testRootKey, "GET", path, nil, nil)
	etag := h.Get("ETag")
	if code != 200 || etag == "" {
		t.Fatalf("GET %s: %d, ETag %q", path, code, etag)
	}
	// X-RateLimit-Reset is the Unix time the 60 s window ends.
	reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if now := time.Now().Unix(); err != nil || reset < now || reset > now+61 {
		t.Fatalf("X-RateLimit-Reset %q at %d: want the Unix time of the window's end", h.Get("X-RateLimit-Reset"), now)
	}
	strong := etag[len("W/"):]
	for _, inm := range []string{etag, strong, `"nope", ` + etag, "*"} {
		code, h, body := d.apiHeaders(testRootKey, "GET", path, nil, map[string]string{"If-None-Match": inm})
		if code != http.StatusNotModified || len(body) != 0 || h.Get("ETag") != etag {
			t.Fatalf("If-None-Match %s: %d, ETag %q, body %q; want 304, %s, no body", inm, code, h.Get("ETag"), body, etag)
		}
	}
	code, _, body := d.apiHeaders(testRootKey, "GET", path, nil, map[string]string{"If-None-Match": `W/"999999"`})
	if code != 200 || len(body) == 0 {
		t.Fatalf("another tag: %d %q, want 200 with the group", code, body)
	}

	d.must(200, "PATCH", path, map[string]any{"name": "cond-renamed"})
	code, h, body = d.apiHeaders(testRootKey, "GET", path, nil, map[string]string{"If-None-Match": etag})
	if code != 200 || h.Get("ETag") == etag || !bytes.Contains(body, []byte("cond-renamed")) {
		t.Fatalf("after a change: %d, ETag %q (old %q), body %q; want 200 with the new version", code, h.Get("ETag"), etag, body)
	}

	if code, _, body := d.apiHeaders(testRootKey, "GET", "/delivery-groups", nil, map[string]string{"If-None-Match": "*"}); code != 200 || len(body) == 0 {
		t.Fatalf("list with If-None-Match: %d %q, want 200", code, body)
	}
}

// httpSendStatus posts a minimal message to /emails/send with key and
// returns the status.
func httpSendStatus(t *testing.T, d *proc, key, tag string) int {
	t.Helper()
	body := `{"from":{"email":"app@example.com"},"to":{"email":"user@example.net"},"subject":"rotate ` + tag + `","text_body":"hi"}`
	code, raw := postSend(t, d, key, "rot-"+tag, body)
	if code != 200 && code != 401 {
		t.Fatalf("send %s: %d %s", tag, code, raw)
	}
	return code
}

// smtpAuth reports whether AUTH PLAIN with key succeeds, and returns
// the open session when it does.
func smtpAuth(t *testing.T, d *proc, key string) (*smtp.Client, bool) {
	t.Helper()
	c, err := smtp.DialStartTLS(d.smtpAddr, insecureTLS())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(plain(key)); err != nil {
		if se := smtpErr(t, err); se.Code != 535 {
			t.Fatalf("AUTH: %v, want success or 535", err)
		}
		c.Close()
		return nil, false
	}
	return c, true
}

// TestKeyRotationGrace: POST /api-keys/{id}/rotate returns a new secret
// that works at once over SMTP AUTH and HTTP Bearer; the old secret keeps
// working for [keys] rotation_grace (here 4 s), including in an SMTP
// session it opened, and is refused after previous_key_expires_at —
// in that open session too. A root key rotated with
// grace_period_seconds 0 loses its old secret at once; a revoked key
// cannot be rotated.
func TestKeyRotationGrace(t *testing.T) {
	t.Parallel()
	d := newDaemon(t, map[string]string{"": "[keys]\nrotation_grace = \"4s\"\n[managed]\nhourly_limit = 100"})
	oldKey, id := d.sendingKeyWithID(nil)

	rot := d.must(200, "POST", "/api-keys/"+id+"/rotate", nil)
	newKey, _ := rot["key"].(string)
	expires, err := time.Parse(time.RFC3339, fmt.Sprint(rot["previous_key_expires_at"]))
	if newKey == "" || newKey == oldKey || rot["id"] != id || err != nil || rot["rotated_at"] == nil {
		t.Fatalf("rotate answer: %v (parse %v)", rot, err)
	}
	if !strings.HasPrefix(newKey, rot["prefix"].(string)) {
		t.Fatalf("prefix %v is not the new secret's", rot["prefix"])
	}
	if got := d.must(200, "GET", "/api-keys/"+id, nil); got["previous_key_expires_at"] != rot["previous_key_expires_at"] || got["key"] != nil {
		t.Fatalf("GET after rotate: %v", got)
	}

	// During the grace period both secrets work. RFC 3339 has whole
	// seconds, so the server's deadline is up to 1 s later than shown;
	// the checks count only if they finished before the shown one.
	if c, ok := smtpAuth(t, d, newKey); !ok {
		t.Fatal("new secret refused by SMTP AUTH")
	} else {
		c.Close()
	}
	if code := httpSendStatus(t, d, newKey, "new-1"); code != 200 {
		t.Fatalf("new secret over HTTP: %d", code)
	}
	oldSession, okSMTP := smtpAuth(t, d, oldKey)
	codeHTTP := httpSendStatus(t, d, oldKey, "old-1")
	if time.Now().Before(expires) && (!okSMTP || codeHTTP != 200) {
		t.Fatalf("old secret during the grace period: SMTP AUTH ok=%v, HTTP %d", okSMTP, codeHTTP)
	}
	if !okSMTP {
		t.Fatal("machine too slow: the 4 s grace period ended before the first check")
	}
	defer oldSession.Close()

	// After it, the old secret is refused everywhere; the new one is not.
	waitFor(t, 15*time.Second, "the old secret to be refused over HTTP", func() bool {
		return httpSendStatus(t, d, oldKey, "old-poll") == 401
	})
	if now := time.Now(); now.Before(expires) {
		t.Fatalf("old secret refused at %v, before previous_key_expires_at %v", now, expires)
	}
	if _, ok := smtpAuth(t, d, oldKey); ok {
		t.Fatal("old secret accepted by SMTP AUTH after the grace period")
	}
	if err := oldSession.Mail("app@example.com", nil); err == nil {
		t.Fatal("a session opened with the old secret still sends after the grace period")
	}
	if c, ok := smtpAuth(t, d, newKey); !ok {
		t.Fatal("new secret refused after the grace period")
	} else {
		c.Close()
	}
	if code := httpSendStatus(t, d, newKey, "new-2"); code != 200 {
		t.Fatalf("new secret over HTTP after the grace period: %d", code)
	}
	if got := d.must(200, "GET", "/api-keys/"+id, nil); got["previous_key_expires_at"] != nil {
		t.Fatalf("previous_key_expires_at after the grace period: %v", got["previous_key_expires_at"])
	}

	// A root key rotated without grace: the old bearer is refused at once.
	root := d.must(201, "POST", "/api-keys", map[string]any{"name": "ops", "type": "root"})
	oldRoot, rootID := root["key"].(string), root["id"].(string)
	code, resp := d.apiAs(oldRoot, "POST", "/api-keys/"+rootID+"/rotate", map[string]any{"grace_period_seconds": 0})
	newRoot, _ := data(resp)["key"].(string)
	if code != 200 || data(resp)["previous_key_expires_at"] != nil || !strings.HasPrefix(newRoot, "smx_root_") {
		t.Fatalf("rotate root without grace: %d %v", code, resp)
	}
	if code, _ := d.apiAs(oldRoot, "GET", "/providers", nil); code != 401 {
		t.Fatalf("old root secret after a rotation without grace: %d, want 401", code)
	}
	if code, _ := d.apiAs(newRoot, "GET", "/providers", nil); code != 200 {
		t.Fatalf("new root secret: %d", code)
	}

	// Bad grace, unknown key, revoked key.
	if code, resp := d.apiBad("POST", "/api-keys/"+id+"/rotate", map[string]any{"grace_period_seconds": -1}); code != 422 {
		t.Fatalf("negative grace: %d %v", code, resp)
	}
	d.must(404, "POST", "/api-keys/key_000000000000000000000000/rotate", nil)
	d.must(200, "DELETE", "/api-keys/"+id, nil)
	if code, resp := d.api("POST", "/api-keys/"+id+"/rotate", nil); code != 409 {
		t.Fatalf("rotating a revoked key: %d %v", code, resp)
	}
	if strings.Contains(d.logText(), newKey) || strings.Contains(d.logText(), oldKey) {
		t.Fatal("a secret reached the log")
	}
}

// TestLimitRequestHostedShape: filing either limit request answers 201
// with the hosted API's request_id (trir_…) and limit snapshot (now
// naming the request as pending), with smtpmux's fields of the request
// alongside; GET /providers/limits' sending_accounts has reserved.
func TestLimitRequestHostedShape(t *testing.T) {
	t.Parallel()
	clearOfWindowEnd(t, 24*time.Hour, time.Minute)
	d := newDaemon(t, map[string]string{"": "[limits]\nproviders_per_team = 1\n[managed]\nhourly_limit = 10\ndaily_limit = 5"})
	c := d.client(d.sendingKey(nil))
	defer c.Close()
	if _, err := sendOne(c, "app@example.com", []string{"a@example.net", "b@example.net", "c@example.net", "d@example.net"},
		routedMsg("app@example.com", "limits-1@e2e.test")); err != nil {
		t.Fatal(err)
	}
	code, resp := d.api("POST", "/providers/shared-amazon-ses-limit-request", map[string]any{"reason": "launch"})
	got := data(resp)
	id, _ := got["request_id"].(string)
	lim, _ := got["limit"].(map[string]any)
	if code != 201 || !strings.HasPrefix(id, "trir_") || got["id"] != id || got["status"] != "pending" || got["type"] != "shared_amazon_ses" {
		t.Fatalf("shared SES request: %d %v", code, resp)
	}
	if lim["pending_request_id"] != id || lim["can_request_increase"] != false || lim["daily_limit"] != 5.0 ||
		lim["sent_today"] == nil || lim["is_near_limit"] != true || lim["provider_id"] == nil {
		t.Fatalf("shared SES request's limit: %v", lim)
	}
	if code, resp := d.api("DELETE", "/providers/shared-amazon-ses-limit-request/"+id, nil); code != 200 || data(resp)["status"] != "cancelled" {
		t.Fatalf("cancel %s: %d %v", id, code, resp)
	}

	d.addProvider(map[string]any{"name": "own", "type": "smtp", "smtp_host": "127.0.0.1", "smtp_port": 2525, "smtp_protocol": "none"})
	accounts := d.must(200, "GET", "/providers/limits", nil)["sending_accounts"].(map[string]any)
	if accounts["reserved"] != 0.0 || accounts["usage"] != 1.0 || accounts["resource_type"] != "sending_accounts" {
		t.Fatalf("sending_accounts snapshot: %v", accounts)
	}
	code, resp = d.api("POST", "/providers/limits/sending-accounts/request-increase", map[string]any{"requested_limit": 5})
	got = data(resp)
	id, _ = got["request_id"].(string)
	lim, _ = got["limit"].(map[string]any)
	if code != 201 || !strings.HasPrefix(id, "trir_") || got["id"] != id || got["type"] != "sending_accounts" || got["requested_limit"] != 5.0 {
		t.Fatalf("sending accounts request: %d %v", code, resp)
	}
	if lim["resource_type"] != "sending_accounts" || lim["pending_request_id"] != id || lim["reserved"] != 0.0 ||
		lim["max_allowed"] != 1.0 || lim["is_at_limit"] != true || lim["can_request_increase"] != false {
		t.Fatalf("sending accounts request's limit: %v", lim)
	}
	if code, resp := d.api("POST", "/providers/limits/sending-accounts/request-increase", nil); code != 409 {
		t.Fatalf("second pending request: %d %v", code, resp)
	}
}

// TestRefusalsCodesAndTestWording (issue 17 item 5): a message over
// max_message_bytes is refused 552 5.3.4 and counted in
// smtpmux_messages_refused_total{reason="message_too_large"}; a sent
// attempt records the upstream's 250 as its code; testing a Custom SMTP
// provider without a username says it connected, not that it
// authenticated.
func TestRefusalsCodesAndTestWording(t *testing.T) {
	t.Parallel()
	clearOfWindowEnd(t, time.Hour, time.Minute)
	d := newDaemon(t, map[string]string{"smtp": "max_message_bytes = 4096", "": "[managed]\nhourly_limit = 100"})
	c := d.client(d.sendingKey(nil))
	defer c.Close()
	big := routedMsg("app@example.com", "big@e2e.test")
	big = append(big[:len(big)-2], []byte(strings.Repeat("x", 70)+"\r\n")...)
	for len(big) < 8192 {
		big = append(big, []byte(strings.Repeat("y", 70)+"\r\n")...)
	}
	_, err := sendOne(c, "app@example.com", []string{"user@example.net"}, big)
	if se := smtpErr(t, err); se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("over-size message: %v, want 552 5.3.4", err)
	}
	if m := d.metrics(); !strings.Contains(m, `smtpmux_messages_refused_total{reason="message_too_large"} 1`) {
		t.Fatalf("552 refusal not counted:\n%s", grepLines(m, "refused"))
	}

	c.Reset()
	id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, routedMsg("app@example.com", "small@e2e.test"))
	if err != nil {
		t.Fatal(err)
	}
	m := d.waitEmail(id)
	atts, _ := m["attempts"].([]any)
	if m["status"] != "sent" || len(atts) != 1 {
		t.Fatalf("message %s: %v", id, m)
	}
	if a := atts[0].(map[string]any); a["code"] != 250.0 || !strings.HasPrefix(fmt.Sprint(a["reply"]), "250 ") {
		t.Fatalf("sent attempt: code %v beside reply %v, want 250", a["code"], a["reply"])
	}

	up := testpeer.Start(t, testpeer.Options{})
	pid := d.addProvider(plainProvider(up, "no-auth", nil))
	res := d.must(200, "POST", "/providers/"+pid+"/test", nil)
	if msg := fmt.Sprint(res["message"]); res["success"] != true || strings.Contains(msg, "authenticated") || !strings.Contains(msg, "no authentication") {
		t.Fatalf("test of a provider without a username: %v", res)
	}
}
