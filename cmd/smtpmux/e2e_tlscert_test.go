package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// starttlsFingerprint does STARTTLS with tlsCfg and returns the SHA-256
// fingerprint of the certificate the daemon presented.
func starttlsFingerprint(t *testing.T, addr string, tlsCfg *tls.Config) (string, error) {
	t.Helper()
	var leaf []byte
	tlsCfg = tlsCfg.Clone()
	tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
		leaf = cs.PeerCertificates[0].Raw
		return nil
	}
	c, err := smtp.DialStartTLS(addr, tlsCfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Noop(); err != nil { // the handshake is done by now
		return "", err
	}
	sum := sha256.Sum256(leaf)
	return strings.ToUpper(strings.ReplaceAll(fmt.Sprintf("% x", sum), " ", ":")), nil
}

const pythonTrustScript = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[3])
ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
s.starttls(context=ctx)
print("verified")
s.quit()
`

// TestSelfSignedCertPersists: the generated certificate is kept in
// data_dir, so its fingerprint (logged at start) is the same after a
// restart, and a client given the file verifies the daemon with it:
// Go's crypto/tls, and Python's default context with strict checks.
func TestSelfSignedCertPersists(t *testing.T) {
	d := newDaemon(t, nil)
	first, err := starttlsFingerprint(t, d.smtpAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.logText(), `"sha256":"`+first+`"`) {
		t.Errorf("the start did not print the certificate's fingerprint %s:\n%s", first, d.logText())
	}
	certPath := filepath.Join(d.dir, "data", selfSignedCertFile)
	if fi, err := os.Stat(filepath.Join(d.dir, "data", selfSignedKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("self-signed key file: %v %v, want mode 0600", fi, err)
	}
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no PEM certificate", certPath)
	}
	for _, name := range []string{"relay.test", "localhost", "127.0.0.1"} {
		if _, err := starttlsFingerprint(t, d.smtpAddr, &tls.Config{RootCAs: pool, ServerName: name}); err != nil {
			t.Errorf("STARTTLS verifying %s with %s: %v", name, certPath, err)
		}
	}
	if py := requirePeer(t, "python3"); py != "" {
		host, port, _ := strings.Cut(d.smtpAddr, ":")
		if out, err := exec.Command(py, "-c", pythonTrustScript, host, port, certPath).CombinedOutput(); err != nil {
			t.Errorf("Python trusting %s: %v\n%s", certPath, err, out)
		}
	}

	d.stop()
	d.start()
	again, err := starttlsFingerprint(t, d.smtpAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Fatalf("certificate changed across a restart: %s, then %s", first, again)
	}
}
