// Package verp makes and checks the VERP return paths of SPEC §13:
// b+<token>@<return-path domain>, where the token names one message (and,
// for a one-recipient transaction, the recipient) and carries an expiry
// and an HMAC. A bounce or feedback report sent to such an address can
// then be matched to what was sent, and an address not minted here (a
// forged or altered token, another daemon's, an expired one) is refused.
//
// It is a leaf both sides import: the scheduler mints tokens when it
// sends, the bounce listener checks them.
package verp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every VERP local part.
const Prefix = "b+"

// AllRecipients is the recipient index of a token minted for a
// transaction with several recipients: a report under it may name any
// recipient of the message, and only those.
const AllRecipients = -1

// macLen is the truncated HMAC's length in bytes: 80 bits, far beyond
// guessing over SMTP, and short enough to keep the local part under
// RFC 5321's 64 octets.
const macLen = 10

// b32 is lower-case base32 without padding: local parts are often
// case-folded on the way back, so the token must survive lower-casing.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Errors of Parse. Callers answer all of them the same way (550); the
// distinction is for logs and tests.
var (
	ErrMalformed = errors.New("not a VERP token")
	ErrBadMAC    = errors.New("VERP token signature does not match")
	ErrExpired   = errors.New("VERP token expired")
)

// Signer mints and checks tokens with one key.
type Signer struct{ key []byte }

// Key derives the token key from the daemon's secret_key; a separate
// derivation keeps it independent of the sealing and tracking keys.
func Key(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("smtpmux verp return path tokens v1"))
	return m.Sum(nil)
}

// New returns a Signer on key (see Key).
func New(key []byte) *Signer { return &Signer{key: key} }

// Token names message messageID, recipient index rcpt (AllRecipients for
// a transaction of several), valid until expires (kept to the hour).
// messageID must be a smtpmux message ID ("eml_" + lower-case base32).
func (s *Signer) Token(messageID string, rcpt int, expires time.Time) string {
	id := strings.TrimPrefix(messageID, "eml_")
	r := "x"
	if rcpt >= 0 {
		r = strconv.Itoa(rcpt)
	}
	hours := strconv.FormatInt(expires.Unix()/3600+1, 36)
	body := id + "-" + r + "-" + hours
	return body + "-" + b32.EncodeToString(s.mac(body))
}

// Address is the return path for a token at domain.
func (s *Signer) Address(messageID string, rcpt int, expires time.Time, domain string) string {
	return Prefix + s.Token(messageID, rcpt, expires) + "@" + domain
}

func (s *Signer) mac(body string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(body))
	return m.Sum(nil)[:macLen]
}

// Parse checks the local part of a recipient address (with or without
// the domain) at time now and returns the message ID and recipient index
// it names. The comparison of the MAC is constant-time.
func (s *Signer) Parse(addr string, now time.Time) (messageID string, rcpt int, err error) {
	local := strings.ToLower(addr)
	if at := strings.LastIndexByte(local, '@'); at >= 0 {
		local = local[:at]
	}
	tok, ok := strings.CutPrefix(local, Prefix)
	if !ok || len(tok) > 64 {
		return "", 0, ErrMalformed
	}
	parts := strings.Split(tok, "-")
	if len(parts) != 4 || parts[0] == "" || !lowerAlnum(parts[0]) {
		return "", 0, ErrMalformed
	}
	got, err := b32.DecodeString(parts[3])
	if err != nil || len(got) != macLen {
		return "", 0, ErrMalformed
	}
	body := parts[0] + "-" + parts[1] + "-" + parts[2]
	if !hmac.Equal(got, s.mac(body)) {
		return "", 0, ErrBadMAC
	}
	hours, err := strconv.ParseInt(parts[2], 36, 64)
	if err != nil {
		return "", 0, ErrMalformed
	}
	if now.Unix() >= hours*3600 {
		return "", 0, ErrExpired
	}
	rcpt = AllRecipients
	if parts[1] != "x" {
		if rcpt, err = strconv.Atoi(parts[1]); err != nil || rcpt < 0 {
			return "", 0, ErrMalformed
		}
	}
	return "eml_" + parts[0], rcpt, nil
}

func lowerAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
