package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"math/big"
)

// Credential secret prefixes (SPEC §1).
const (
	SecretPrefixRoot    = "smx_root_"
	SecretPrefixSending = "smx_mbx_"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewSecret returns prefix + 43 base62 characters (256 bits of entropy).
func NewSecret(prefix string) string {
	b := make([]byte, 43)
	max := big.NewInt(int64(len(base62)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("crypto/rand failed: " + err.Error())
		}
		b[i] = base62[n.Int64()]
	}
	return prefix + string(b)
}

// HashSecret is the stored form of a credential. Secrets carry 256 bits of
// entropy, so a plain SHA-256 is enough: no dictionary can reach them.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// EqualHash compares two hashes in constant time.
func EqualHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Sealer encrypts secrets the daemon must replay (upstream passwords, tokens,
// private keys) with AES-256-GCM under a key derived from the configured
// secret_key.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives a 256-bit key from secretKey with SHA-256, so any
// operator-chosen string of enough entropy works.
func NewSealer(secretKey string) (*Sealer, error) {
	if len(secretKey) < 16 {
		return nil, errors.New("secret_key must be at least 16 characters")
	}
	k := sha256.Sum256([]byte(secretKey))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns nonce||ciphertext; an empty plaintext seals to nil.
func (s *Sealer) Seal(plain string) []byte {
	if plain == "" {
		return nil
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return s.aead.Seal(nonce, nonce, []byte(plain), nil)
}

// ErrUnseal means a sealed value could not be decrypted: the secret_key
// changed or the store was tampered with.
var ErrUnseal = errors.New("cannot decrypt stored secret (was secret_key changed?)")

// Open decrypts a value produced by Seal.
func (s *Sealer) Open(sealed []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", ErrUnseal
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", ErrUnseal
	}
	return string(plain), nil
}
