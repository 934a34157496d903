package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/relay/dnscheck"
	"github.com/smtpmux/smtpmux/relay/dnscheck/dnstest"
)

// dkimMessage has no DKIM-Signature of its own and a From in the domain
// under test; %s are the From address and a tag.
const dkimMessage = `From: App <%s>
To: user@example.net
Subject: DKIM %s
Date: Mon, 02 Jan 2006 15:04:05 +0000
Message-ID: <%s@mail.example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Signed by smtpmux.
A second line.
`

// TestDKIMEndToEnd is issue 6's acceptance path through the binary: a team
// adds a domain, publishes the records the API returned in a real DNS
// server on 127.0.0.1, verifies the domain through the API (config
// [dns] resolver), sends over SMTP, and the upstream copy carries a DKIM
// signature that go-msgauth verifies against that DNS server — and that a
// one-byte body change breaks.
func TestDKIMEndToEnd(t *testing.T) {
	srv, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"": fmt.Sprintf("[dns]\nresolver = %q\n", srv.Addr)})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})

	code, resp := d.api("POST", "/domains", map[string]any{"domain": "Mail.Example.org"})
	if code != 201 {
		t.Fatalf("create domain: %d %v", code, resp)
	}
	dom := data(resp)
	id := dom["id"].(string)
	if dom["status"] != "pending" || dom["dkim_algorithm"] != "rsa" || strings.Contains(fmt.Sprint(resp), "PRIVATE") {
		t.Fatalf("created domain: %v", dom)
	}

	// Before the records exist the domain does not verify, and mail from
	// it goes out unsigned.
	if code, resp := d.api("POST", "/domains/"+id+"/verify", nil); code != 200 || data(resp)["status"] != "failed" {
		t.Fatalf("verify unpublished: %d %v", code, resp)
	}
	c := d.client(key)
	defer c.Close()
	if _, err := sendOne(c, "app@mail.example.org", []string{"user@example.net"},
		crlf(fmt.Sprintf(dkimMessage, "app@mail.example.org", "early", "early"))); err != nil {
		t.Fatal(err)
	}
	if got := up.WaitMessages(t, 1, 15e9)[0]; bytes.Contains(got.Data, []byte("DKIM-Signature")) {
		t.Fatalf("unverified domain signed:\n%s", got.Data)
	}

	// Publish exactly what the API said (the RSA key needs several
	// character-strings) and verify.
	for _, r := range dom["records"].([]any) {
		rec := r.(map[string]any)
		srv.SetTXT(rec["name"].(string), rec["value"].(string))
	}
	code, resp = d.api("POST", "/domains/"+id+"/verify", nil)
	if code != 200 || data(resp)["status"] != "verified" {
		t.Fatalf("verify: %d %v", code, resp)
	}
	for _, ch := range data(resp)["checks"].([]any) {
		if ch.(map[string]any)["status"] != "pass" {
			t.Fatalf("check not passed: %v", ch)
		}
	}

	id2, err := sendOne(c, "app@mail.example.org", []string{"user@example.net"},
		crlf(fmt.Sprintf(dkimMessage, "app@mail.example.org", "signed", "signed")))
	if err != nil {
		t.Fatal(err)
	}
	got := up.WaitMessages(t, 2, 15e9)[1]
	if !bytes.HasPrefix(got.Data, []byte("DKIM-Signature:")) {
		t.Fatalf("upstream copy not signed:\n%s", got.Data)
	}
	ctx := context.Background()
	opts := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		return (&dnscheck.Resolver{Addr: srv.Addr}).LookupTXT(ctx, name)
	}}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got.Data), opts)
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "mail.example.org" {
		t.Fatalf("signature does not verify: %v %+v\n%s", err, vs, got.Data)
	}
	i := bytes.Index(got.Data, []byte("Signed by"))
	tampered := bytes.Clone(got.Data)
	tampered[i] = 's'
	vs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), opts)
	if err != nil || len(vs) != 1 || vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), "body hash") {
		t.Fatalf("a one-byte body change still verifies: %v %+v", err, vs)
	}
	if e := d.waitEmail(id2); e["status"] != "sent" || e["sent_from_email"] != "app@mail.example.org" {
		t.Fatalf("email log: %v", e)
	}

	// Mail from a domain the team has not verified stays unsigned.
	if _, err := sendOne(c, "app@example.com", []string{"user@example.net"},
		crlf(fmt.Sprintf(dkimMessage, "app@example.com", "other", "other"))); err != nil {
		t.Fatal(err)
	}
	if got := up.WaitMessages(t, 3, 15e9)[2]; bytes.Contains(got.Data, []byte("DKIM-Signature")) {
		t.Fatalf("unknown domain signed:\n%s", got.Data)
	}
}

// TestDomainAPIThroughDaemon covers what only the binary shows: the zone
// file as plain text, team isolation with a second team's key, delete,
// and the [dns] keys' validation.
func TestDomainAPIThroughDaemon(t *testing.T) {
	d := newDaemon(t, map[string]string{"": "operator_token = \"operator-token-0123456789\"\n"})
	code, resp := d.api("POST", "/domains", map[string]any{"domain": "zone.example.org", "dkim_algorithm": "ed25519"})
	if code != 201 {
		t.Fatalf("create: %d %v", code, resp)
	}
	id := data(resp)["id"].(string)
	req, _ := http.NewRequest("GET", "http://"+d.httpAddr+"/api/v1/domains/"+id+"/zone-file", nil)
	req.Header.Set("Authorization", "Bearer "+testRootKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	zone, _ := io.ReadAll(res.Body)
	res.Body.Close()
	checkAPI(t, req, nil, res, zone, false)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(string(zone), "_smtpmux.zone.example.org.\t3600\tIN\tTXT") {
		t.Fatalf("zone file %d %v:\n%s", res.StatusCode, res.Header, zone)
	}
	if code, resp := d.api("POST", "/domains", map[string]any{"domain": "zone.example.org"}); code != 409 {
		t.Fatalf("duplicate: %d %v", code, resp)
	}
	if code, resp := d.api("POST", "/domains", map[string]any{"domain": "not_a domain"}); code != 422 {
		t.Fatalf("bad domain: %d %v", code, resp)
	}

	// A second team (created by the operator) cannot see the domain.
	code, resp = d.apiAs("operator-token-0123456789", "POST", "/operator/teams", map[string]any{"name": "other"})
	if code != 201 {
		t.Fatalf("create team: %d %v", code, resp)
	}
	rk, _ := data(resp)["root_key"].(map[string]any)
	other, _ := rk["key"].(string)
	if other == "" {
		t.Fatalf("no root key for the new team: %v", resp)
	}
	if code, _ := d.apiAs(other, "GET", "/domains/"+id, nil); code != 404 {
		t.Fatalf("other team sees the domain: %d", code)
	}
	if code, _ := d.api("DELETE", "/domains/"+id, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := d.api("GET", "/domains/"+id, nil); code != 404 {
		t.Fatalf("deleted domain still there: %d", code)
	}
}

func TestDomainConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		toml, wantErr string
	}{
		{"[dns]\nresolver = \"127.0.0.1:5353\"\nrecheck_interval = \"30m\"\n[tracking]\nlisten = \"127.0.0.1:8080\"", ""},
		{"[dns]\nresolver = \"9.9.9.9\"", ""},
		{"[dns]\nresolver = \"[2620:fe::fe]:53\"", ""},
		{"[dns]\nresolver = \"not a resolver\"", "dns.resolver"},
		{"[dns]\nrecheck_interval = \"0s\"", "dns.recheck_interval"},
		{"[dns]\nrecheck_interval = \"often\"", "dns.recheck_interval"},
		{"[tracking]\nlisten = \"8080\"", "tracking.listen"},
		{"[tracking]\nhost = \"x\"", "tracking.host: unknown key"},
	} {
		path := t.TempDir() + "/c.toml"
		if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Fatalf("%q: %v", tc.toml, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Fatalf("%q: got %v, want an error naming %s", tc.toml, err, tc.wantErr)
		case err == nil && cfg.recheckInterval <= 0:
			t.Fatalf("%q: recheck interval %v", tc.toml, cfg.recheckInterval)
		}
	}
	if cfg, _ := loadConfig("../../config.example.toml"); cfg == nil || cfg.recheckInterval.Hours() != 6 ||
		cfg.file.DNS.Resolver != "" || cfg.file.Tracking.Listen != "" {
		t.Fatal("config.example.toml does not document the defaults")
	}
}
