package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/smtpmux/smtpmux/internal/jobs"
	"github.com/smtpmux/smtpmux/relay/dnscheck"
	"github.com/smtpmux/smtpmux/relay/dnscheck/dnstest"
	"github.com/smtpmux/smtpmux/relay/shape"
	"github.com/smtpmux/smtpmux/store"
)

// createDomain adds a domain through the API (ed25519 unless said: key
// generation is instant) and returns the answer.
func (e *testEnv) createDomain(name string, alg ...string) *resp {
	e.t.Helper()
	body := map[string]any{"domain": name, "dkim_algorithm": "ed25519"}
	if len(alg) > 0 {
		body["dkim_algorithm"] = alg[0]
	}
	r := e.do("POST", "/api/v1/domains", body)
	if r.Code != http.StatusCreated {
		e.t.Fatalf("create domain %s: %d %s", name, r.Code, r.Body)
	}
	return r
}

// record returns the value of the published record with that purpose.
func (r *resp) record(purpose string) (name, value string) {
	recs, _ := r.get("data.records").([]any)
	for _, x := range recs {
		m := x.(map[string]any)
		if m["purpose"] == purpose {
			return m["name"].(string), m["value"].(string)
		}
	}
	return "", ""
}

func TestDomainCreateGetAndKeyAtRest(t *testing.T) {
	e := newEnv(t)
	e.secret("PRIVATE KEY")
	e.secret("private_key")
	r := e.createDomain(" Mail.Example.ORG. ", "rsa") // the default, named explicitly
	id := r.str("data.id")
	if !store.ValidID(store.PrefixDomain, id) || r.str("data.domain") != "mail.example.org" ||
		r.str("data.status") != "pending" || r.str("data.dkim_algorithm") != "rsa" ||
		!strings.HasPrefix(r.str("data.dkim_selector"), "smx") || r.get("data.checks") != nil ||
		r.get("data.verified_at") != nil || r.Header.Get("Location") != "/api/v1/domains/"+id ||
		r.Header.Get("ETag") != `W/"1"` || r.str("data.created_at") != "2026-03-01T12:00:00Z" {
		t.Fatalf("create: %v %s", r.Header, r.Body)
	}
	sel := r.str("data.dkim_selector")
	name, val := r.record(dnscheck.CheckDKIM)
	if name != sel+"._domainkey.mail.example.org" || !strings.HasPrefix(val, "v=DKIM1; k=rsa; p=") {
		t.Fatalf("dkim record %q %q", name, val)
	}
	if name, val := r.record(dnscheck.CheckVerification); name != "_smtpmux.mail.example.org" ||
		!strings.HasPrefix(val, dnscheck.VerificationPrefix) || len(val) != len(dnscheck.VerificationPrefix)+32 {
		t.Fatalf("verification record %q %q", name, val)
	}
	// The managed account is active, so the SPF suggestion includes SES.
	if _, spf := r.record(dnscheck.CheckSPF); spf != "v=spf1 mx include:amazonses.com ~all" {
		t.Fatalf("spf %q", spf)
	}

	// The key is sealed at rest and is the key the record publishes.
	d, err := e.st.Domain(e.team.ID, id)
	if err != nil || len(d.PrivateKeySealed) == 0 || strings.Contains(string(d.PrivateKeySealed), "PRIVATE KEY") {
		t.Fatalf("stored domain: %v %+v", err, d)
	}
	pem, err := e.sealer.Open(d.PrivateKeySealed)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := shape.ParsePrivateKey([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := shape.PublicDNS(signer); pub != val {
		t.Fatal("the published key is not the stored key's")
	}

	g := e.do("GET", "/api/v1/domains/"+id, nil)
	if g.Code != 200 || g.str("data.id") != id || g.Header.Get("ETag") != `W/"1"` {
		t.Fatalf("get: %s", g.Body)
	}
	ed := e.createDomain("ed.example.org")
	if _, v := ed.record(dnscheck.CheckDKIM); !strings.HasPrefix(v, "v=DKIM1; k=ed25519; p=") ||
		ed.str("data.dkim_selector") == sel {
		t.Fatalf("ed25519: %s", ed.Body)
	}
}

func TestDomainBadInput(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		body        any
		status      int
		code, field string
	}{
		{map[string]any{}, 422, "validation_error", "domain"},
		{map[string]any{"domain": ""}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "localhost"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "127.0.0.1"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "-bad.example.com"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "bad_label.example.com"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "https://example.com/"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "exa mple.com"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": strings.Repeat("a", 64) + ".example.com"}, 422, "validation_error", "domain"},
		{map[string]any{"domain": "example.com", "dkim_algorithm": "dsa"}, 422, "validation_error", "dkim_algorithm"},
		{map[string]any{"domain": 42}, 400, "invalid_parameter", "domain"},
		{map[string]any{"domain": "example.com", "selector": "x"}, 400, "invalid_parameter", "selector"},
		{"not json", 400, "invalid_parameter", ""},
		{"[]", 400, "invalid_parameter", ""},
	} {
		expectErr(t, e.do("POST", "/api/v1/domains", tc.body), tc.status, tc.code, tc.field)
	}
	if ds, _ := e.st.Domains(e.team.ID); len(ds) != 0 {
		t.Fatalf("bad input stored %d domains", len(ds))
	}
	expectErr(t, e.do("GET", "/api/v1/domains/dom_nope", nil), 404, "not_found", "")
	expectErr(t, e.do("GET", "/api/v1/domains/"+store.NewID(store.PrefixDomain), nil), 404, "not_found", "")
	expectErr(t, e.do("PATCH", "/api/v1/domains/"+store.NewID(store.PrefixDomain), map[string]any{}), 405, "method_not_allowed", "")
	expectErr(t, e.do("GET", "/api/v1/domains?limit=0", nil), 400, "invalid_parameter", "limit")
}

func TestDomainUniqueAndIsolated(t *testing.T) {
	e := newEnv(t)
	id := e.createDomain("example.org").str("data.id")
	expectErr(t, e.do("POST", "/api/v1/domains", map[string]any{"domain": "EXAMPLE.org."}), 409, "conflict", "")

	// Another team may add the same name; it gets its own key and token.
	_, _, rootB := e.provision("other")
	asB := func(method, path string, body any) *resp {
		return e.do(method, path, body, "Authorization", "Bearer "+rootB)
	}
	rb := asB("POST", "/api/v1/domains", map[string]any{"domain": "example.org", "dkim_algorithm": "ed25519"})
	if rb.Code != 201 || rb.str("data.id") == id {
		t.Fatalf("team B create: %s", rb.Body)
	}
	// Team B sees nothing of team A's domain.
	for _, p := range []string{"", "/zone-file"} {
		expectErr(t, asB("GET", "/api/v1/domains/"+id+p, nil), 404, "not_found", "")
	}
	expectErr(t, asB("POST", "/api/v1/domains/"+id+"/verify", nil), 404, "not_found", "")
	expectErr(t, asB("DELETE", "/api/v1/domains/"+id, nil), 404, "not_found", "")
	if l := asB("GET", "/api/v1/domains", nil); len(l.get("data").([]any)) != 1 || l.str("data.0.id") != rb.str("data.id") {
		t.Fatalf("team B list: %s", l.Body)
	}
	if g := e.do("GET", "/api/v1/domains/"+id, nil); g.Code != 200 {
		t.Fatalf("team A lost its domain: %s", g.Body)
	}

	// Permissions: a read-only key can list but not create or delete.
	ro := e.addKey(e.team.ID, store.KeyRoot, "domain.read")
	asRO := func(method, path string, body any) *resp {
		return e.do(method, path, body, "Authorization", "Bearer "+ro)
	}
	if r := asRO("GET", "/api/v1/domains", nil); r.Code != 200 {
		t.Fatalf("read-only list: %s", r.Body)
	}
	expectErr(t, asRO("POST", "/api/v1/domains", map[string]any{"domain": "x.example.org"}), 403, "insufficient_permissions", "")
	expectErr(t, asRO("DELETE", "/api/v1/domains/"+id, nil), 403, "insufficient_permissions", "")
	expectErr(t, asRO("POST", "/api/v1/domains/"+id+"/verify", nil), 403, "insufficient_permissions", "")
}

func TestDomainListDeleteAndZoneFile(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for _, n := range []string{"a.example.org", "b.example.org", "c.example.org"} {
		ids = append(ids, e.createDomain(n).str("data.id"))
	}
	r := e.do("GET", "/api/v1/domains?limit=2", nil)
	if r.Code != 200 || len(r.get("data").([]any)) != 2 || r.get("pagination.has_more") != true || r.str("data.0.id") != ids[0] {
		t.Fatalf("list: %s", r.Body)
	}
	next := e.do("GET", "/api/v1/domains?limit=2&cursor="+r.str("pagination.next_cursor"), nil)
	if len(next.get("data").([]any)) != 1 || next.str("data.0.id") != ids[2] || next.get("pagination.has_more") != false {
		t.Fatalf("page 2: %s", next.Body)
	}

	// The zone file is plain text with absolute names.
	req := httptest.NewRequest("GET", "/api/v1/domains/"+ids[0]+"/zone-file", nil)
	req.Header.Set("Authorization", "Bearer "+e.root)
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	zone := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") ||
		!strings.Contains(zone, "_smtpmux.a.example.org.\t3600\tIN\tTXT\t\"smtpmux-verification=") ||
		!strings.Contains(zone, "._domainkey.a.example.org.\t3600\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=") ||
		!strings.Contains(zone, "_dmarc.a.example.org.") || strings.Contains(zone, "PRIVATE") {
		t.Fatalf("zone file %d %v:\n%s", rec.Code, rec.Header(), zone)
	}

	// DELETE honours If-Match, then the name is free again.
	path := "/api/v1/domains/" + ids[1]
	expectErr(t, e.do("DELETE", path, nil, "If-Match", `W/"7"`), 409, "conflict", "")
	if d := e.do("DELETE", path, nil, "If-Match", `W/"1"`); d.Code != 200 || d.get("data.deleted") != true {
		t.Fatalf("delete: %s", d.Body)
	}
	expectErr(t, e.do("GET", path, nil), 404, "not_found", "")
	expectErr(t, e.do("DELETE", path, nil), 404, "not_found", "")
	if again := e.createDomain("b.example.org"); again.str("data.id") == ids[1] {
		t.Fatal("re-added domain reused the old ID")
	}
}

// publish serves a domain's records the way a team would publish them.
func publish(srv *dnstest.Server, r *resp) {
	recs, _ := r.get("data.records").([]any)
	for _, x := range recs {
		m := x.(map[string]any)
		srv.SetTXT(m["name"].(string), m["value"].(string))
	}
}

func TestDomainVerify(t *testing.T) {
	srv, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := newEnv(t, func(o *Options) { o.DNSResolver = srv.Addr })
	r := e.createDomain("example.org", "rsa")
	path := "/api/v1/domains/" + r.str("data.id")

	// Nothing published: DNS says NXDOMAIN, which is a definite failure.
	v := e.do("POST", path+"/verify", nil)
	if v.Code != 200 || v.str("data.status") != "failed" || v.str("data.checks.0.name") != "verification_txt" ||
		v.str("data.checks.0.status") != "fail" || v.str("data.last_checked_at") != "2026-03-01T12:00:00Z" {
		t.Fatalf("unpublished: %s", v.Body)
	}

	// Published (the RSA key as several character-strings): verified.
	publish(srv, r)
	e.clock.Advance(time.Minute)
	v = e.do("POST", path+"/verify", nil)
	if v.Code != 200 || v.str("data.status") != "verified" || v.str("data.verified_at") != "2026-03-01T12:01:00Z" {
		t.Fatalf("published: %s", v.Body)
	}
	for i := 0; i < 4; i++ {
		if v.str("data.checks."+strconv.Itoa(i)+".status") != "pass" {
			t.Fatalf("check %d: %s", i, v.Body)
		}
	}
	if g := e.do("GET", path, nil); g.str("data.status") != "verified" || g.str("data.checks.1.name") != "dkim" {
		t.Fatalf("get after verify: %s", g.Body)
	}

	// A DNS outage keeps the status (and the verified_at of the first pass).
	name, _ := r.record(dnscheck.CheckVerification)
	srv.SetRcode(name, dns.RcodeServerFailure)
	e.clock.Advance(time.Minute)
	v = e.do("POST", path+"/verify", nil)
	if v.str("data.status") != "verified" || v.str("data.verified_at") != "2026-03-01T12:01:00Z" ||
		v.get("data.checks.0.temporary") != true {
		t.Fatalf("outage: %s", v.Body)
	}
	// A new domain checked during an outage stays pending.
	p := e.createDomain("other.example.org")
	srv.SetRcode("_smtpmux.other.example.org", dns.RcodeServerFailure)
	if v := e.do("POST", "/api/v1/domains/"+p.str("data.id")+"/verify", nil); v.str("data.status") != "pending" {
		t.Fatalf("pending through outage: %s", v.Body)
	}

	// A removed DKIM key is a definite failure again.
	srv.SetRcode(name, dns.RcodeSuccess)
	dk, _ := r.record(dnscheck.CheckDKIM)
	srv.Remove(dk)
	v = e.do("POST", path+"/verify", nil)
	if v.str("data.status") != "failed" || v.str("data.checks.1.status") != "fail" {
		t.Fatalf("key removed: %s", v.Body)
	}
}

func TestDomainBackgroundRecheck(t *testing.T) {
	srv, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := newEnv(t, func(o *Options) { o.DNSResolver = srv.Addr })
	r := e.createDomain("example.org")
	id := r.str("data.id")
	chk := jobs.NewDomainChecker(e.st, srv.Addr, nil, e.clock.Now, 0)
	if chk.Interval != 6*time.Hour {
		t.Fatalf("default interval %v", chk.Interval)
	}
	ctx := context.Background()
	// Never checked: the first pass checks it (and fails: not published).
	if n := chk.Pass(ctx); n != 1 {
		t.Fatalf("first pass checked %d", n)
	}
	publish(srv, r)
	// Within the interval nothing is due.
	e.clock.Advance(5 * time.Hour)
	if n := chk.Pass(ctx); n != 0 {
		t.Fatalf("pass within the interval checked %d", n)
	}
	e.clock.Advance(time.Hour + time.Second)
	if n := chk.Pass(ctx); n != 1 {
		t.Fatalf("pass after the interval checked %d", n)
	}
	if d, _ := e.st.Domain(e.team.ID, id); d.Status != store.DomainVerified {
		t.Fatalf("status after re-check: %s", d.Status)
	}

	// Run with a short interval is stoppable and re-checks by itself.
	srv.Remove("_smtpmux.example.org")
	e.clock.Advance(7 * time.Hour)
	run := jobs.NewDomainChecker(e.st, srv.Addr, nil, e.clock.Now, 60*time.Millisecond)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { run.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if d, _ := e.st.Domain(e.team.ID, id); d.Status == store.DomainFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background check did not notice the removed record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}
