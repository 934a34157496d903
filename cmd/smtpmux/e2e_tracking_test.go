package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay/dnscheck/dnstest"
)

// verifyDomainAs adds name as a sending domain of key's team, publishes
// the records the API returned in dns and verifies it through the API: a
// tracking domain must be (under) one of the team's verified domains. The
// daemon's [dns] resolver must be dns; published keeps what is already
// there, since two teams may both publish their tokens for one name.
func verifyDomainAs(t *testing.T, d *proc, key string, dns *dnstest.Server, published map[string][]string, name string) {
	t.Helper()
	code, resp := d.apiAs(key, "POST", "/domains", map[string]any{"domain": name})
	if code != 201 {
		t.Fatalf("create domain %s: %d %v", name, code, resp)
	}
	for _, r := range data(resp)["records"].([]any) {
		rec := r.(map[string]any)
		n := rec["name"].(string)
		published[n] = append(published[n], rec["value"].(string))
		dns.SetTXT(n, published[n]...)
	}
	if code, resp := d.apiAs(key, "POST", "/domains/"+data(resp)["id"].(string)+"/verify", nil); code != 200 ||
		data(resp)["status"] != "verified" {
		t.Fatalf("verify %s: %d %v", name, code, resp)
	}
}

// trackedMessage has no From header (the provider's default fills it), a
// plain part with a URL (never rewritten) and a base64 HTML part with two
// web links, a mailto link and an opted-out link.
func trackedMessage() []byte {
	html := `<html><body><p>Hello! <a href="https://shop.example/sale?id=7&amp;utm=mail">Sale</a>
<a href="mailto:help@shop.example">Write to us</a>
<a href="http://blog.example/post">Blog</a>
<a data-smtpmux-notrack href="https://private.example/keep">Kept</a></p></body></html>`
	b64 := base64.StdEncoding.EncodeToString([]byte(html))
	var wrapped strings.Builder
	for len(b64) > 76 {
		wrapped.WriteString(b64[:76] + "\n")
		b64 = b64[76:]
	}
	wrapped.WriteString(b64 + "\n")
	return crlf(`To: user@example.net
Subject: tracked
Message-ID: <tracked-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Sale at https://shop.example/plain
--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

` + wrapped.String() + `--b1--
`)
}

// parts returns the decoded text/plain and text/html bodies of a
// multipart message, as a recipient's client would show them.
func parts(t *testing.T, raw []byte) (plain, html string) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("not multipart:\n%s", raw)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		typ, _, _ := p.Header.ContentType()
		b, _ := io.ReadAll(p.Body)
		switch typ {
		case "text/plain":
			plain = string(b)
		case "text/html":
			html = string(b)
		}
	}
}

var trackRe = regexp.MustCompile(`https://links\.example\.com/t/([A-Za-z0-9_-]+)`)

// noFollow does not follow redirects, so the 302 itself can be checked.
var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestTrackingEndToEnd sends HTML mail through a provider with a tracking
// domain: the upstream copy links to https://<tracking_domain>/t/<token>,
// and GET /t/<token> on the daemon's [tracking] listener for that Host
// answers 302 to the original link and sends a message.clicked webhook.
// The provider's from_email also fills the missing From, which
// GET /emails/{id} reports as sent_from_email.
func TestTrackingEndToEnd(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	var mu sync.Mutex
	var events []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}))
	defer hook.Close()
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	trackAddr := freeAddr(t)
	const op = "operator-token-0123456789"
	d := newDaemon(t, map[string]string{"": fmt.Sprintf("operator_token = %q\n[tracking]\nlisten = %q\n[webhooks]\nallow_private_targets = true\n[dns]\nresolver = %q\n",
		op, trackAddr, dns.Addr)})
	upstream := map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none",
		"tracking_domain": "links.example.com", "from_email": "news@defaults.example", "from_name": "Newsletter"}
	// A tracking domain the team has not proved it owns is refused
	// (hostile-tenant audit): it would be an open redirect on that name.
	if code, resp := d.api("POST", "/providers", upstream); code != 422 {
		t.Fatalf("unverified tracking domain: %d %v", code, resp)
	}
	published := map[string][]string{}
	verifyDomainAs(t, d, testRootKey, dns, published, "example.com")
	if code, resp := d.api("POST", "/webhooks", map[string]any{"url": hook.URL, "event_types": []string{"message.clicked"}}); code != 201 {
		t.Fatalf("webhook: %d %v", code, resp)
	}
	_, key := d.setupRelay(upstream)
	// Another team that proves the same zone still cannot take this
	// team's link domain, nor the daemon's own names.
	code, resp := d.apiAs(op, "POST", "/operator/teams", map[string]any{"name": "other"})
	if code != 201 {
		t.Fatalf("create team: %d %v", code, resp)
	}
	other := data(resp)["root_key"].(map[string]any)["key"].(string)
	verifyDomainAs(t, d, other, dns, published, "example.com")
	for _, host := range []string{"links.example.com", "localhost", "accounts.google.com"} {
		upstream["tracking_domain"] = host
		if code, resp := d.apiAs(other, "POST", "/providers", upstream); code != 422 {
			t.Fatalf("team 2 claims %s: %d %v", host, code, resp)
		}
	}
	c := d.client(key)
	defer c.Close()
	id, err := sendOne(c, "bounce@example.com", []string{"user@example.net"}, trackedMessage())
	if err != nil {
		t.Fatal(err)
	}
	got := up.WaitMessages(t, 1, 15e9)[0]
	if !bytes.Contains(got.Data, []byte("From: \"Newsletter\" <news@defaults.example>\r\n")) {
		t.Fatalf("From default missing upstream:\n%s", got.Data)
	}
	plain, html := parts(t, got.Data)
	if strings.TrimSpace(plain) != "Sale at https://shop.example/plain" {
		t.Fatalf("text/plain part changed: %q", plain)
	}
	toks := trackRe.FindAllStringSubmatch(html, -1)
	if len(toks) != 2 || strings.Contains(html, "shop.example/sale") || strings.Contains(html, "blog.example") ||
		!strings.Contains(html, "mailto:help@shop.example") || !strings.Contains(html, "https://private.example/keep") {
		t.Fatalf("html links: %v\n%s", toks, html)
	}
	if e := d.waitEmail(id); e["status"] != "sent" || e["sent_from_email"] != "news@defaults.example" {
		t.Fatalf("email log: %v", e)
	}

	// The redirect, on the tracking listener for the link's own tracking
	// domain (as that domain's proxy would call it), twice each.
	get := func(base, host, tok string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+base+"/t/"+tok, nil)
		req.Host = host
		req.Header.Set("User-Agent", "e2e-mail-client")
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for i, want := range []string{"https://shop.example/sale?id=7&utm=mail", "http://blog.example/post"} {
		for range 2 {
			if res := get(trackAddr, "links.example.com", toks[i][1]); res.StatusCode != http.StatusFound || res.Header.Get("Location") != want {
				t.Fatalf("GET /t/%s: %d %q, want 302 %q", toks[i][1], res.StatusCode, res.Header.Get("Location"), want)
			}
		}
	}
	// Not an open redirect (issue 12, item 5): another team's tracking
	// domain, the API's own host, and the API listener even with the
	// link's Host all answer 404.
	for _, c := range []struct{ base, host string }{{trackAddr, "links.other-team.example"}, {trackAddr, d.httpAddr},
		{d.httpAddr, "links.example.com"}, {d.httpAddr, d.httpAddr}} {
		if res := get(c.base, c.host, toks[0][1]); res.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /t/ on %s for Host %s: %d, want 404", c.base, c.host, res.StatusCode)
		}
	}
	// Four clicks, four message.clicked events naming message, link and
	// the one recipient (the click's record; its log line is not checked).
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 {
		t.Fatalf("webhook got %d events: %v", len(events), events)
	}
	ev := events[0]
	evData, _ := ev["data"].(map[string]any)
	if ev["type"] != "message.clicked" || evData["message_id"] != id || evData["recipient"] != "user@example.net" ||
		!strings.HasPrefix(fmt.Sprint(evData["url"]), "http") || evData["user_agent"] != "e2e-mail-client" {
		t.Fatalf("click event: %v", ev)
	}

	// A forged token and the Management API on the tracking listener: 404.
	for _, u := range []string{"http://" + d.httpAddr + "/t/AAAAAAAAAAAAAAAAAAAAAA", "http://" + trackAddr + "/t/" + toks[0][1] + "x",
		"http://" + trackAddr + "/api/v1/providers"} {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+testRootKey)
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env map[string]any
		json.NewDecoder(res.Body).Decode(&env)
		res.Body.Close()
		if res.StatusCode != 404 || env["ok"] != false {
			t.Fatalf("GET %s: %d %v", u, res.StatusCode, env)
		}
	}
}

// TestShapingSenderDefaults: a message with its own From keeps it (and
// reports it as sent_from_email) while a missing Reply-To is filled from
// the provider's reply_to_* defaults; without a tracking domain links
// are not touched.
func TestShapingSenderDefaults(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, nil)
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none",
		"from_email": "default@defaults.example", "reply_to_email": "support@defaults.example", "reply_to_name": "Support"})
	c := d.client(key)
	defer c.Close()
	body := crlf("From: Own <own@example.com>\nTo: user@example.net\nSubject: own\nContent-Type: text/html\n\n" +
		"<a href=\"https://shop.example/x\">x</a>\n")
	id, err := sendOne(c, "own@example.com", []string{"user@example.net"}, body)
	if err != nil {
		t.Fatal(err)
	}
	got := up.WaitMessages(t, 1, 15e9)[0]
	s := string(got.Data)
	if !strings.Contains(s, "From: Own <own@example.com>\r\n") || strings.Contains(s, "default@defaults.example") ||
		!strings.Contains(s, "Reply-To: \"Support\" <support@defaults.example>\r\n") ||
		!strings.Contains(s, `href="https://shop.example/x"`) {
		t.Fatalf("upstream copy:\n%s", s)
	}
	if e := d.waitEmail(id); e["sent_from_email"] != "own@example.com" {
		t.Fatalf("sent_from_email: %v", e["sent_from_email"])
	}
}
