package selfsigned

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// TestNew: the certificate names the host, localhost and loopback, is its
// own trust anchor (a client given only it verifies it), and the PEM pair
// loads back as the same key pair.
func TestNew(t *testing.T) {
	cert, certPEM, keyPEM, err := New("mx.example.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"mx.example.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if !leaf.IsCA || !leaf.MaxPathLenZero || len(leaf.SubjectKeyId) == 0 {
		t.Errorf("not a strict trust anchor: IsCA %v, MaxPathLenZero %v", leaf.IsCA, leaf.MaxPathLenZero)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != 2*time.Hour {
		t.Errorf("validity %v, want an hour back and lifetime forward", d)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Error("key is not PKCS #8 PEM")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Error(err)
	}
	only, _, _, err := New("localhost", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := x509.ParseCertificate(only.Certificate[0]); len(l.DNSNames) != 1 {
		t.Errorf("localhost listed twice: %v", l.DNSNames)
	}
}
