package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/internal/selfsigned"
)

// certStore serves the listeners' certificate and can swap it at runtime
// (SIGHUP) without restarting listeners.
type certStore struct {
	mu   sync.RWMutex
	cert *tls.Certificate
}

func (c *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

func (c *certStore) set(cert *tls.Certificate) {
	c.mu.Lock()
	c.cert = cert
	c.mu.Unlock()
}

// Where the self-signed certificate is kept in data_dir. A client can
// trust it (the .crt file, PEM) or pin its fingerprint only because it
// survives restarts; one made anew at every start could be neither.
const (
	selfSignedCertFile = "tls-selfsigned.crt"
	selfSignedKeyFile  = "tls-selfsigned.key"
	// selfSignedLifetime is 825 days, the longest macOS and iOS accept for
	// a server certificate a user trusts by hand.
	selfSignedLifetime = 825 * 24 * time.Hour
	// selfSignedRenewBefore: a certificate this close to its end is
	// replaced at start (a new fingerprint, announced like the first).
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// loadCert reads the configured pair, or, when none is configured, the
// self-signed one kept in dataDir, made for hostname on first use (and
// again when hostname changes or it nears its end), so STARTTLS works on
// a fresh install. path is the certificate file either way.
func loadCert(certFile, keyFile, hostname, dataDir string) (cert *tls.Certificate, path string, err error) {
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, "", fmt.Errorf("smtp.tls_cert_file: %w", err)
		}
		return &c, certFile, nil
	}
	path = filepath.Join(dataDir, selfSignedCertFile)
	keyPath := filepath.Join(dataDir, selfSignedKeyFile)
	if c, err := tls.LoadX509KeyPair(path, keyPath); err == nil && selfSignedUsable(&c, hostname) {
		return &c, path, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%s: %w (delete it and its .key to make a new one)", path, err)
	}
	c, certPEM, keyPEM, err := selfsigned.New(hostname, selfSignedLifetime)
	if err != nil {
		return nil, "", err
	}
	// The key first: a certificate file never points at a key not written.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, "", fmt.Errorf("saving the self-signed key: %w", err)
	}
	if err := writeFileAtomic(path, certPEM, 0o644); err != nil {
		return nil, "", fmt.Errorf("saving the self-signed certificate: %w", err)
	}
	return c, path, nil
}

// selfSignedUsable reports whether a kept self-signed certificate still
// names hostname and has time left.
func selfSignedUsable(c *tls.Certificate, hostname string) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return false
	}
	return slices.Contains(leaf.DNSNames, hostname) && time.Until(leaf.NotAfter) > selfSignedRenewBefore
}

// certFingerprint is the SHA-256 of the leaf certificate, in the
// colon-separated hex form openssl, browsers and pinning settings show.
func certFingerprint(c *tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(hexes, ":")
}

// writeFileAtomic writes a file whole or not at all (temp file, fsync,
// rename), so a crash never leaves half a key behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, nothing to remove
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
