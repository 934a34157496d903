package shape

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

const signMe = "From: \"Alice\" <alice@example.org>\r\nTo: bob@example.net\r\nSubject: signed\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1@example.org>\r\nX-Custom: not signed\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello  Bob,\r\n\r\nbye\r\n"

// verify checks msg's signatures with go-msgauth, answering the key lookup
// from a static record instead of DNS (the DNS path is tested in dnscheck).
func verify(msg []byte, name, txt string) ([]*dkim.Verification, error) {
	return dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != name {
				return nil, errors.New("no such record " + domain)
			}
			return []string{txt}, nil // one entry per record, strings joined, like net.LookupTXT
		},
	})
}

func TestSignVerifies(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519", ""} {
		t.Run("alg="+alg, func(t *testing.T) {
			signer, txt, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			wantK := "k=rsa"
			if alg == "ed25519" {
				wantK = "k=ed25519"
			}
			if !strings.HasPrefix(txt, "v=DKIM1; "+wantK+"; p=") {
				t.Fatalf("TXT %q", txt)
			}
			signed, err := Sign([]byte(signMe), DKIMKey{Domain: "example.org", Selector: "smx1", Signer: signer})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(signed, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(signed, []byte(signMe)) {
				t.Fatal("signature must be prepended and the message kept byte for byte")
			}
			hdr := strings.Join(strings.Fields(string(signed[:len(signed)-len(signMe)])), "")
			for _, want := range []string{"c=relaxed/relaxed", "d=example.org", "s=smx1",
				"h=From:Subject:Date:To:Message-ID:MIME-Version:Content-Type;"} {
				if !strings.Contains(hdr, want) {
					t.Errorf("signature lacks %q:\n%s", want, hdr)
				}
			}
			vs, err := verify(signed, "smx1._domainkey.example.org", txt)
			if err != nil || len(vs) != 1 || vs[0].Err != nil {
				t.Fatalf("verify: %v %+v", err, vs)
			}
			// Relaxed body canonicalisation tolerates white-space changes but
			// not content changes.
			tampered := bytes.Replace(signed, []byte("Hello  Bob"), []byte("Hello Rob"), 1)
			if vs, _ := verify(tampered, "smx1._domainkey.example.org", txt); len(vs) != 1 || vs[0].Err == nil {
				t.Fatal("tampered body verified")
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	signer, _, _ := GenerateKey("ed25519")
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	cases := map[string]struct {
		msg string
		key DKIMKey
	}{
		"no from":      {"To: b@example.net\r\n\r\nx", DKIMKey{"example.org", "s", signer}},
		"two froms":    {"From: a@example.org\r\nFrom: b@example.org\r\n\r\nx", DKIMKey{"example.org", "s", signer}},
		"no selector":  {signMe, DKIMKey{"example.org", "", signer}},
		"no key":       {signMe, DKIMKey{"example.org", "s", nil}},
		"weak rsa key": {signMe, DKIMKey{"example.org", "s", weak}},
	}
	for name, tc := range cases {
		if _, err := Sign([]byte(tc.msg), tc.key); err == nil {
			t.Errorf("%s: signed anyway", name)
		}
	}
	if _, _, err := GenerateKey("dsa"); err == nil {
		t.Error("unknown algorithm accepted")
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		signer, txt, _ := GenerateKey(alg)
		pemBytes, err := MarshalPrivateKey(signer)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePrivateKey(pemBytes)
		if err != nil {
			t.Fatal(err)
		}
		if txt2, _ := PublicDNS(back); txt2 != txt {
			t.Errorf("%s: public key changed across marshal/parse", alg)
		}
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := PublicDNS(edPriv); err != nil {
		t.Error(err)
	}
	if _, err := ParsePrivateKey([]byte("not pem")); err == nil {
		t.Error("garbage parsed as a key")
	}
}
