package shape

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIMKey is what Sign needs for one verified domain: the signing domain
// (d=), the selector (s=) whose TXT record holds the public key, and the
// private key (RSA of at least 2048 bits, or Ed25519).
type DKIMKey struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// signedHeaders is the RFC 6376 §5.4.1 recommended set; Sign signs those of
// them the message actually has. Signing absent fields would forbid adding
// them later, which is sometimes wanted (e.g. a list manager's Reply-To)
// and mostly just surprises.
var signedHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// minRSABits is the smallest RSA key we sign with; RFC 8301 forbids
// anything below 1024 and receivers increasingly reject 1024.
const minRSABits = 2048

// Sign DKIM-signs msg (rsa-sha256 or ed25519-sha256, relaxed/relaxed) and
// returns it with the DKIM-Signature field prepended. It must run after
// every other edit, since any later change to a signed field or the body
// invalidates the signature. msg must have exactly one From field. Messages
// should be in SMTP wire form (CRLF line endings), which is what the relay
// stores.
func Sign(msg []byte, k DKIMKey) ([]byte, error) {
	if k.Domain == "" || k.Selector == "" || k.Signer == nil {
		return nil, errors.New("shape: DKIM key needs domain, selector and signer")
	}
	if err := checkSigner(k.Signer); err != nil {
		return nil, err
	}
	h, _, err := parseHeader(msg)
	if err != nil {
		return nil, err
	}
	if n := len(h.Values("From")); n != 1 {
		return nil, fmt.Errorf("shape: cannot DKIM-sign a message with %d From fields", n)
	}
	var keys []string
	for _, k := range signedHeaders {
		if h.Has(k) {
			keys = append(keys, k)
		}
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 1024)
	err = dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 k.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		return nil, fmt.Errorf("shape: dkim sign: %w", err)
	}
	return out.Bytes(), nil
}

// GenerateKey creates a DKIM key pair: alg "rsa" (or "") for RSA 2048, the
// default because every receiver supports it, or "ed25519" (RFC 8463),
// which is smaller but not yet verified everywhere. pubDNS is the full TXT
// value to publish at <selector>._domainkey.<domain>; use SplitTXT for DNS
// software that wants it as ≤255-byte strings.
func GenerateKey(alg string) (signer crypto.Signer, pubDNS string, err error) {
	switch strings.ToLower(alg) {
	case "", "rsa":
		signer, err = rsa.GenerateKey(rand.Reader, minRSABits)
	case "ed25519":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, "", fmt.Errorf("shape: unknown DKIM key algorithm %q (want rsa or ed25519)", alg)
	}
	if err != nil {
		return nil, "", fmt.Errorf("shape: generate DKIM key: %w", err)
	}
	pubDNS, err = PublicDNS(signer)
	return signer, pubDNS, err
}

// PublicDNS returns the DKIM TXT record value for signer's public key,
// "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or
// "v=DKIM1; k=ed25519; p=<base64 raw key>" (RFC 6376 §3.6.1, RFC 8463 §4).
func PublicDNS(signer crypto.Signer) (string, error) {
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("shape: marshal DKIM public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("shape: unsupported DKIM key type %T", signer.Public())
}

// MarshalPrivateKey encodes a DKIM private key as PKCS #8 PEM, the form the
// store encrypts at rest.
func MarshalPrivateKey(signer crypto.Signer) ([]byte, error) {
	if err := checkSigner(signer); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("shape: marshal DKIM private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes what MarshalPrivateKey produced (PKCS #1 RSA PEM
// is accepted too, for keys imported from elsewhere).
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("shape: DKIM private key is not PEM")
	}
	var key any
	var err error
	if blk.Type == "RSA PRIVATE KEY" {
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	} else {
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("shape: parse DKIM private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("shape: unsupported DKIM key type %T", key)
	}
	if err := checkSigner(signer); err != nil {
		return nil, err
	}
	return signer, nil
}

// checkSigner accepts the key types DKIM defines, at a strength receivers
// accept.
func checkSigner(s crypto.Signer) error {
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("shape: RSA DKIM key of %d bits, need at least %d", pub.N.BitLen(), minRSABits)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("shape: unsupported DKIM key type %T", s.Public())
}
