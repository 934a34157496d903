package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/smtpmux/smtpmux/relay/oauth/oauthtest"
)

// TestGmailConnectAndSend runs the whole connected-account path through
// the binary against local fakes of Google's OAuth and Gmail endpoints:
// start → consent → callback creates the provider → an SMTP send goes out
// through users.messages.send as the authorised address → a revoked grant
// turns the provider pending → connecting again brings it back.
func TestGmailConnectAndSend(t *testing.T) {
	idp := oauthtest.New(t, "google")
	var mu sync.Mutex
	var raws [][]byte
	idp.Mux.HandleFunc("POST /gmail/v1/users/me/messages/send", func(w http.ResponseWriter, r *http.Request) {
		if !idp.Authorized(r) {
			idp.Unauthorized(w)
			return
		}
		var body struct{ Raw string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Raw == "" {
			oauthtest.WriteJSON(w, 400, map[string]any{"error": map[string]any{"code": 400, "message": "raw required"}})
			return
		}
		raw, err := base64.URLEncoding.DecodeString(body.Raw)
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(body.Raw)
		}
		if err != nil {
			oauthtest.WriteJSON(w, 400, map[string]any{"error": map[string]any{"code": 400, "message": "bad base64"}})
			return
		}
		mu.Lock()
		raws = append(raws, raw)
		n := len(raws)
		mu.Unlock()
		oauthtest.WriteJSON(w, 200, map[string]any{"id": fmt.Sprintf("gm%d", n), "threadId": "t1"})
	})

	httpAddr := freeAddr(t)
	p := idp.Provider("http://" + httpAddr + "/oauth/callback")
	d := newDaemonAt(t, httpAddr, map[string]string{"": fmt.Sprintf(`
[oauth.google]
client_id = %q
client_secret = %q
redirect_url = %q
auth_url = %q
token_url = %q
userinfo_url = %q
api_base_url = %q
`, p.ClientID, p.ClientSecret, p.RedirectURL, p.AuthURL, p.TokenURL, p.UserInfoURL, p.APIBaseURL)})

	connect := func() (int, map[string]any) {
		code, resp := d.api("POST", "/providers/oauth/google/start", nil)
		if code != 200 {
			t.Fatalf("start: %d %v", code, resp)
		}
		authURL := data(resp)["authorization_url"].(string)
		oc, state, err := idp.Consent(authURL)
		if err != nil {
			t.Fatal(err)
		}
		if state != data(resp)["state"] {
			t.Fatalf("state %q came back as %q", data(resp)["state"], state)
		}
		return d.apiAs("", "GET", "//oauth/callback?"+url.Values{"code": {oc}, "state": {state}}.Encode(), nil)
	}
	code, resp := connect()
	if code != 201 {
		t.Fatalf("callback: %d %v", code, resp)
	}
	prov := data(resp)
	if prov["type"] != "gmail_api" || prov["oauth_email"] != idp.Email || prov["has_refresh_token"] != true || prov["status"] != "active" {
		t.Fatalf("connected provider %v", prov)
	}
	// The state is single use.
	if code, _ := d.apiAs("", "GET", "//oauth/callback?code=x&state=reused-or-unknown", nil); code != 422 {
		t.Fatalf("unknown state: %d, want 422", code)
	}

	_, key := d.setupRelayExisting()
	c := d.client(key)
	defer c.Close()
	body := crlf("From: App Team <app@example.com>\nTo: user@example.net\nSubject: via gmail\n\nHello from Gmail.\n")
	id, err := sendOne(c, "app@example.com", []string{"user@example.net"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if e := d.waitEmail(id); e["status"] != "sent" {
		t.Fatalf("email %v", e)
	}
	mu.Lock()
	got := string(raws[0])
	mu.Unlock()
	if !strings.Contains(got, "From: App Team <"+idp.Email+">") || !strings.Contains(got, "Hello from Gmail.") {
		t.Fatalf("Gmail got:\n%s", got)
	}

	// A revoked grant: the next send fails auth and the provider is pending.
	idp.Revoke()
	idp.ExpireAccess()
	if _, err := sendOne(c, "app@example.com", []string{"user@example.net"}, body); err != nil {
		t.Fatal(err)
	}
	provID := prov["id"].(string)
	var status any
	for i := 0; i < 200; i++ {
		_, r := d.api("GET", "/providers/"+provID, nil)
		if status = data(r)["status"]; status == "pending" {
			break
		}
		sleepMS(20)
	}
	if status != "pending" {
		t.Fatalf("after a revoked grant the provider is %v, want pending", status)
	}
	// Connecting the same account again restores it.
	if code, resp := connect(); code != 200 || data(resp)["id"] != provID || data(resp)["status"] != "active" {
		t.Fatalf("reconnect: %d %v", code, resp)
	}
}
