package dnscheck

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/smtpmux/smtpmux/relay/dnscheck/dnstest"
)

func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// publish puts every record of rs into the test server.
func publish(s *dnstest.Server, rs []Record) {
	for _, r := range rs {
		s.SetTXT(r.Name, r.Value)
	}
}

func statuses(r Result) map[string]string {
	m := map[string]string{}
	for _, c := range r.Checks {
		m[c.Name] = c.Status
	}
	return m
}

func TestVerifyAllPublished(t *testing.T) {
	s := startDNS(t)
	publish(s, Records("example.org", "smx1", "tok", longKey))
	s.SetTXT("example.org", "google-site-verification=x", "v=spf1 mx ~all") // other TXT at the apex is fine
	res := (&Resolver{Addr: s.Addr}).Verify(context.Background(), "example.org", "smx1", "tok", longKey)
	if !res.Verified || res.Temporary {
		t.Fatalf("not verified: %+v", res)
	}
	for name, st := range statuses(res) {
		if st != StatusPass {
			t.Errorf("%s = %s", name, st)
		}
	}
	if c, _ := res.Check(CheckDKIM); len(c.Found) != 1 || c.Found[0] != longKey {
		t.Errorf("DKIM found %q: the split strings must be joined", c.Found)
	}
	if c, _ := res.Check(CheckSPF); len(c.Found) != 1 || c.Found[0] != "v=spf1 mx ~all" {
		t.Errorf("SPF found %q: only SPF records belong there", c.Found)
	}
}

func TestVerifyFallsBackToTCP(t *testing.T) {
	s := startDNS(t)
	publish(s, Records("example.org", "smx1", "tok", longKey))
	s.ForceTCP(true)
	res := (&Resolver{Addr: s.Addr}).Verify(context.Background(), "example.org", "smx1", "tok", longKey)
	if !res.Verified {
		t.Fatalf("not verified over TCP: %+v", res)
	}
	if _, tcp := s.Queries(); tcp < 4 {
		t.Errorf("%d TCP queries, want one per check", tcp)
	}

	// Without forcing, a record too large for the advertised UDP size is
	// truncated by the server and fetched again over TCP.
	s.ForceTCP(false)
	huge := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 3000)
	s.SetTXT("big._domainkey.example.org", huge)
	_, before := s.Queries()
	got, err := (&Resolver{Addr: s.Addr}).LookupTXT(context.Background(), "big._domainkey.example.org")
	if err != nil || len(got) != 1 || got[0] != huge {
		t.Fatalf("large TXT: %v, %d records", err, len(got))
	}
	if _, after := s.Queries(); after != before+1 {
		t.Errorf("large answer did not go over TCP")
	}
}

func TestVerifyReportsProblems(t *testing.T) {
	const name = "example.org"
	cases := []struct {
		name   string
		setup  func(s *dnstest.Server)
		want   map[string]string
		detail map[string]string // substring of Detail per failing check
	}{
		{"nothing published", func(s *dnstest.Server) {},
			map[string]string{CheckVerification: StatusFail, CheckDKIM: StatusFail, CheckSPF: StatusFail, CheckDMARC: StatusFail},
			map[string]string{CheckVerification: "NXDOMAIN", CheckDKIM: "NXDOMAIN"}},
		{"wrong token", func(s *dnstest.Server) { s.SetTXT("_smtpmux."+name, "smtpmux-verification=other") },
			map[string]string{CheckVerification: StatusFail, CheckDKIM: StatusPass},
			map[string]string{CheckVerification: "no TXT record equals smtpmux-verification=tok"}},
		{"wrong key", func(s *dnstest.Server) { s.SetTXT("smx1._domainkey."+name, "v=DKIM1; k=rsa; p=AAAA") },
			map[string]string{CheckVerification: StatusPass, CheckDKIM: StatusFail},
			map[string]string{CheckDKIM: "does not match"}},
		{"two DKIM records", func(s *dnstest.Server) { s.SetTXT("smx1._domainkey."+name, longKey, longKey) },
			map[string]string{CheckDKIM: StatusFail}, map[string]string{CheckDKIM: "several"}},
		{"key reformatted", func(s *dnstest.Server) {
			p := strings.TrimPrefix(longKey, "v=DKIM1; k=rsa; p=")
			s.SetTXTStrings("smx1._domainkey."+name, []string{"k=rsa;p=" + p[:100], " " + p[100:300], p[300:] + " ; v=DKIM1"})
		}, map[string]string{CheckDKIM: StatusPass}, nil},
		{"no DMARC, two SPF", func(s *dnstest.Server) {
			s.Remove("_dmarc." + name)
			s.SetTXT(name, "v=spf1 mx ~all", "v=spf1 -all")
		}, map[string]string{CheckVerification: StatusPass, CheckDKIM: StatusPass, CheckSPF: StatusFail, CheckDMARC: StatusFail},
			map[string]string{CheckSPF: "several", CheckDMARC: "NXDOMAIN"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startDNS(t)
			if tc.name != "nothing published" {
				publish(s, Records(name, "smx1", "tok", longKey))
			}
			tc.setup(s)
			res := (&Resolver{Addr: s.Addr}).Verify(context.Background(), name, "smx1", "tok", longKey)
			got := statuses(res)
			for check, st := range tc.want {
				if got[check] != st {
					t.Errorf("%s = %s, want %s", check, got[check], st)
				}
			}
			for check, sub := range tc.detail {
				if c, _ := res.Check(check); !strings.Contains(c.Detail, sub) {
					t.Errorf("%s detail %q lacks %q", check, c.Detail, sub)
				}
			}
			wantVerified := got[CheckVerification] == StatusPass && got[CheckDKIM] == StatusPass
			if res.Verified != wantVerified || res.Temporary {
				t.Errorf("verified=%v temporary=%v", res.Verified, res.Temporary)
			}
		})
	}
}

func TestVerifyServfailIsTemporary(t *testing.T) {
	s := startDNS(t)
	publish(s, Records("example.org", "smx1", "tok", longKey))
	s.SetRcode("smx1._domainkey.example.org", dns.RcodeServerFailure)
	res := (&Resolver{Addr: s.Addr}).Verify(context.Background(), "example.org", "smx1", "tok", longKey)
	if c, _ := res.Check(CheckDKIM); res.Verified || !res.Temporary || !c.Temporary || !strings.Contains(c.Detail, "SERVFAIL") {
		t.Fatalf("SERVFAIL should be a temporary failure: %+v", res)
	}
}

func TestVerifyDeadResolver(t *testing.T) {
	bh, err := dnstest.StartBlackHole()
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	// Nothing but the per-query timeout can end these checks (the context
	// has no deadline): that Verify returns at all is the claim. The
	// watchdog only turns a missing timeout into a failure, not a hang.
	got := make(chan Result, 1)
	go func() {
		got <- (&Resolver{Addr: bh.Addr, Timeout: 100 * time.Millisecond}).Verify(context.Background(), "example.org", "smx1", "tok", longKey)
	}()
	var res Result
	select {
	case res = <-got:
	case <-time.After(time.Minute):
		t.Fatal("Verify against a dead resolver never returned: no timeout ended its queries")
	}
	if res.Verified || !res.Temporary {
		t.Fatalf("want temporary failure: %+v", res)
	}
	for _, c := range res.Checks {
		if c.Status != StatusFail || !c.Temporary || !strings.Contains(c.Detail, "timeout") {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	_, err = (&Resolver{Addr: bh.Addr}).LookupTXT(context.Background(), "example.org")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsTimeout || !de.Temporary() {
		t.Errorf("want a temporary timeout *net.DNSError, got %#v", err)
	}

	// A cancelled context stops at once.
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := (&Resolver{Addr: bh.Addr}).LookupTXT(done, "example.org"); err == nil {
		t.Error("cancelled lookup succeeded")
	}
}

func TestResolverConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(conf, []byte("# nothing\n"), 0o644)
	r := &Resolver{ResolvConf: conf}
	if _, err := r.LookupTXT(context.Background(), "example.org"); err == nil || !strings.Contains(err.Error(), "no nameserver") {
		t.Errorf("empty resolv.conf: %v", err)
	}
	os.WriteFile(conf, []byte("nameserver 192.0.2.1\nnameserver 2001:db8::1\n"), 0o644)
	got, err := r.servers()
	if err != nil || len(got) != 2 || got[0] != "192.0.2.1:53" || got[1] != "[2001:db8::1]:53" {
		t.Errorf("servers = %q, %v", got, err)
	}
	for addr, want := range map[string]string{"127.0.0.1:5353": "127.0.0.1:5353", "10.0.0.1": "10.0.0.1:53", "::1": "[::1]:53", "[::1]": "[::1]:53"} {
		if got, _ := (&Resolver{Addr: addr}).servers(); len(got) != 1 || got[0] != want {
			t.Errorf("Addr %q -> %q, want %q", addr, got, want)
		}
	}
	res := (&Resolver{ResolvConf: filepath.Join(dir, "missing")}).Verify(context.Background(), "example.org", "s", "t", "k")
	if res.Verified || !res.Temporary {
		t.Errorf("unreadable resolv.conf: %+v", res)
	}
}

// longKey stands in for an RSA 2048 DKIM record: longer than one
// character-string.
var longKey = "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A", 12)

func TestRecords(t *testing.T) {
	rs := Records("Example.ORG.", "smx1", "tok123", longKey, "amazonses.com")
	want := []Record{
		{CheckVerification, "TXT", "_smtpmux.example.org", "smtpmux-verification=tok123", true},
		{CheckDKIM, "TXT", "smx1._domainkey.example.org", longKey, true},
		{CheckSPF, "TXT", "example.org", "v=spf1 mx include:amazonses.com ~all", false},
		{CheckDMARC, "TXT", "_dmarc.example.org", "v=DMARC1; p=none; adkim=r; aspf=r", false},
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d records", len(rs))
	}
	for i := range want {
		if rs[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, rs[i], want[i])
		}
	}
	if spf := Records("example.org", "s", "t", "k")[2].Value; spf != "v=spf1 mx ~all" {
		t.Errorf("SPF without includes = %q", spf)
	}
}

// TestZoneFileParses feeds the snippet to miekg/dns's zone parser: what we
// tell teams to paste must be valid BIND syntax and mean the same records.
func TestZoneFileParses(t *testing.T) {
	rs := Records("example.org", "smx1", `to"k\en`, longKey)
	zone := ZoneFile(rs)
	zp := dns.NewZoneParser(strings.NewReader(zone), "", "")
	var got []Record
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		txt := rr.(*dns.TXT)
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Errorf("character-string of %d bytes", len(s))
			}
		}
		// miekg/dns keeps character-strings in presentation form.
		val := strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(strings.Join(txt.Txt, ""))
		got = append(got, Record{Name: strings.TrimSuffix(txt.Hdr.Name, "."), Value: val})
		if txt.Hdr.Ttl != zoneTTL {
			t.Errorf("TTL %d", txt.Hdr.Ttl)
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone snippet does not parse: %v\n%s", err, zone)
	}
	if len(got) != len(rs) {
		t.Fatalf("parsed %d records from\n%s", len(got), zone)
	}
	for i := range rs {
		if got[i].Name != rs[i].Name || got[i].Value != rs[i].Value {
			t.Errorf("record %d round-trips as %+v, want %s %q", i, got[i], rs[i].Name, rs[i].Value)
		}
	}
}

func TestValidDomain(t *testing.T) {
	for d, want := range map[string]bool{
		"example.org": true, "Mail.Example.ORG.": true, "xn--bcher-kva.example": true, "a-b.c": true,
		"": false, "localhost": false, "-bad.example": false, "bad-.example": false, "a..b": false,
		"bücher.example": false, "sp ace.example": false, strings.Repeat("a", 64) + ".example": false,
		strings.Repeat("abcdefghi.", 26) + "com": false,
	} {
		if got := ValidDomain(d); got != want {
			t.Errorf("ValidDomain(%q) = %v, want %v", d, got, want)
		}
	}
}
