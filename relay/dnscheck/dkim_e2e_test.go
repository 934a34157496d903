package dnscheck_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/smtpmux/smtpmux/relay/dnscheck"
	"github.com/smtpmux/smtpmux/relay/dnscheck/dnstest"
	"github.com/smtpmux/smtpmux/relay/shape"
)

// TestShapeSignVerifyOverDNS is the whole SPEC §6 path without the relay:
// generate a domain key, publish the records in a real DNS server, verify
// the domain, shape a message (sender defaults, tracking links), DKIM-sign
// it, and check the signature with go-msgauth looking the key up through
// that DNS server. Changing one body byte must break the signature.
func TestShapeSignVerifyOverDNS(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			srv, err := dnstest.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			ctx := context.Background()

			signer, pubDNS, err := shape.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range dnscheck.Records("mail.example.org", "smx2024", "tok-123", pubDNS) {
				srv.SetTXT(r.Name, r.Value) // RSA keys arrive as several character-strings
			}
			res := (&dnscheck.Resolver{Addr: srv.Addr}).Verify(ctx, "mail.example.org", "smx2024", "tok-123", pubDNS)
			if !res.Verified {
				t.Fatalf("domain not verified: %+v", res)
			}

			msg := []byte("To: bob@example.net\r\nSubject: Newsletter\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
				"Message-ID: <n1@mail.example.org>\r\nMIME-Version: 1.0\r\n" +
				"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"<p>Hi! <a href=3D\"https://shop.example/sale?id=3D7\">Sale</a></p>\r\n")
			msg, sentFrom, err := shape.ApplyDefaults(msg, shape.SenderDefaults{FromEmail: "news@mail.example.org", FromName: "Example"})
			if err != nil || sentFrom != "news@mail.example.org" {
				t.Fatalf("defaults: %v %q", err, sentFrom)
			}
			msg, n, err := shape.RewriteLinks(msg, "click.example.org", func(string) string { return "abc" })
			if err != nil || n != 1 {
				t.Fatalf("links: n=%d err=%v", n, err)
			}
			signed, err := shape.Sign(msg, shape.DKIMKey{Domain: "mail.example.org", Selector: "smx2024", Signer: signer})
			if err != nil {
				t.Fatal(err)
			}
			// Once signed, shaping must leave the message alone.
			if again, _, err := shape.RewriteLinks(signed, "click.example.org", func(string) string { return "x" }); err != shape.ErrDKIMSigned || !bytes.Equal(again, signed) {
				t.Fatalf("signed message rewritten: %v", err)
			}

			lookup := &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
				return (&dnscheck.Resolver{Addr: srv.Addr}).LookupTXT(ctx, name)
			}}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), lookup)
			if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "mail.example.org" {
				t.Fatalf("signature does not verify: %v %+v", err, vs)
			}

			i := bytes.Index(signed, []byte("Sale</a>"))
			tampered := bytes.Clone(signed)
			tampered[i] = 's'
			vs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), lookup)
			if err != nil || len(vs) != 1 || vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), "body hash") {
				t.Fatalf("one-byte body change still verifies: %v %+v", err, vs)
			}
		})
	}
}
