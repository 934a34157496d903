// Package shaping is the relay's Shaper (SPEC §6): for each delivery
// attempt it applies the picked provider's sender defaults, rewrites links
// for the provider's tracking domain and DKIM-signs mail whose From domain
// is a verified domain of the message's team, in that order.
//
// It is the glue between the pure building blocks of relay/shape (which
// must stay free of store) and the store, which holds the domains, their
// sealed keys and the tracking links. It lives in its own package rather
// than in relay (which must not import relay/shape) or in cmd (where it
// could not be unit-tested against a real store without the binary).
package shaping

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/relay/shape"
	"github.com/smtpmux/smtpmux/store"
)

// tokenBytes is how much of the HMAC a tracking token keeps: 128 bits
// cannot be guessed, and 22 base64url characters keep links short.
const tokenBytes = 16

// Shaper implements relay.Shaper. It is safe for concurrent use.
type Shaper struct {
	st     *store.Store
	sealer *store.Sealer
	key    []byte
	log    *slog.Logger
	now    func() time.Time

	// linkTTL is how long a tracking link redirects; 0: for ever.
	linkTTL time.Duration

	mu   sync.Mutex
	keys map[string]cachedKey // domain ID → parsed private key
}

// Option configures a Shaper.
type Option func(*Shaper)

// WithLinkTTL makes tracking links expire ttl after they are stored
// ([tracking] link_ttl); without it they never do.
func WithLinkTTL(ttl time.Duration) Option { return func(s *Shaper) { s.linkTTL = ttl } }

// cachedKey avoids unsealing and parsing a PEM key on every attempt; the
// version tells a stale entry from the current record.
type cachedKey struct {
	version int64
	signer  crypto.Signer
}

// New returns a Shaper. trackingKey is the HMAC key of tracking tokens
// (see TrackingKey); sealer opens the domains' private keys.
func New(st *store.Store, sealer *store.Sealer, trackingKey []byte, log *slog.Logger, opts ...Option) *Shaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Shaper{st: st, sealer: sealer, key: trackingKey, log: log, now: time.Now, keys: map[string]cachedKey{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// TrackingKey derives the tracking-token HMAC key from the daemon's
// secret_key. A separate derivation keeps the sealing key and the token
// key independent: learning one says nothing about the other.
func TrackingKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("smtpmux tracking link tokens v1"))
	return m.Sum(nil)
}

// Token is the tracking token of the index-th trackable link of message
// messageID rewritten for tracking domain host: an HMAC, so it cannot be
// forged or enumerated, and a pure function of its inputs, so every
// attempt of a message through the same tracking domain sends the same
// bytes (SPEC §6). The host is part of it because the stored link is
// bound to its host: failover to a provider with another tracking domain
// mints other tokens rather than links that could not redirect.
func Token(key []byte, messageID string, index int, host string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(messageID))
	m.Write([]byte{0})
	m.Write([]byte(strconv.Itoa(index)))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(host)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:tokenBytes])
}

// Shape rewrites body for provider p. Only a fault of the configuration
// (an invalid sender default or authorised address) or an unreadable
// header returns an error; the relay then sends the message unshaped. A
// step that cannot apply to this message (links in already-signed mail,
// broken MIME, a key that will not sign) is skipped and logged, and the
// other steps still run.
func (s *Shaper) Shape(m *store.Message, p *store.Provider, body []byte) ([]byte, string, error) {
	out, sentFrom, err := s.sender(m, p, body)
	if err != nil {
		return body, "", err
	}
	if p.TrackingDomain != "" {
		out = s.track(m, p, out)
	}
	out = s.sign(m, out, sentFrom)
	if sentFrom == "" {
		// No From header at all: the envelope sender is what the log can
		// say the message went out as.
		sentFrom = m.From
	}
	return out, sentFrom, nil
}

// sender applies the provider's sender defaults. Connected accounts
// (Gmail, Microsoft 365) can only send as the address that granted the
// token, so From becomes it (keeping the display name); Reply-To defaults
// still fill a missing Reply-To.
//
// For those accounts the header is fitted with mailapi.Prepare, the very
// function the Gmail and Graph providers apply before their API call,
// rather than with a From rewrite here: Prepare also rewrites To/Cc/Bcc to the
// pending recipients and writes the display name its own way, so running
// it only in the provider, after signing, would break the DKIM signature
// over From and To. Prepare leaves its own output unchanged, so the
// provider's second pass is a no-op.
func (s *Shaper) sender(m *store.Message, p *store.Provider, body []byte) ([]byte, string, error) {
	oauth := (p.Type == store.TypeGmail || p.Type == store.TypeOutlook) && p.OAuthEmail != ""
	d := shape.SenderDefaults{ReplyToEmail: p.ReplyToEmail, ReplyToName: p.ReplyToName}
	if !oauth {
		d.FromEmail, d.FromName = p.FromEmail, p.FromName
	}
	out, sentFrom, err := shape.ApplyDefaults(body, d)
	if err != nil {
		return body, "", fmt.Errorf("provider %s sender defaults: %w", p.ID, err)
	}
	if oauth {
		if out, err = mailapi.Prepare(out, p.OAuthEmail, m.PendingRecipients()); err != nil {
			return body, "", fmt.Errorf("provider %s authorised address: %w", p.ID, err)
		}
		sentFrom, _ = shape.FromAddress(out)
	}
	return out, sentFrom, nil
}

// track rewrites the message's links to the provider's tracking domain and
// stores what each token stands for. The links must be stored before the
// rewritten bytes go out, or a recipient could click a token that is not
// known yet; if storing fails the message goes with its original links.
func (s *Shaper) track(m *store.Message, p *store.Provider, msg []byte) []byte {
	var links []store.TrackingLink
	now := s.now().UTC()
	i := 0
	host := strings.ToLower(p.TrackingDomain)
	var expires *time.Time
	if s.linkTTL > 0 {
		e := now.Add(s.linkTTL)
		expires = &e
	}
	token := func(u string) string {
		t := Token(s.key, m.ID, i, host)
		if trackable(u) {
			links = append(links, store.TrackingLink{Token: t, TeamID: m.TeamID, MessageID: m.ID, Index: i, URL: u,
				CreatedAt: now, Host: host, ExpiresAt: expires})
		}
		i++
		return t
	}
	out, n, err := shape.RewriteLinks(msg, host, token)
	if err != nil {
		// ErrDKIMSigned and ErrBrokenMIME are expected outcomes for some
		// mail, not faults: say why the links stayed as they were.
		level := slog.LevelInfo
		if !errors.Is(err, shape.ErrDKIMSigned) && !errors.Is(err, shape.ErrBrokenMIME) {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "tracking links not rewritten", "msg_id", m.ID, "provider", p.ID, "reason", err.Error())
		return msg
	}
	if n == 0 {
		return msg
	}
	if err := s.st.SaveTrackingLinks(links); err != nil {
		s.log.Error("tracking links not stored; sending original links", "msg_id", m.ID, "provider", p.ID, "err", err)
		return msg
	}
	return out
}

// trackable reports whether a link may be stored as a redirect target:
// only absolute http and https URLs, so a token can never redirect to a
// javascript: or data: URL even if the rewriter let one through.
func trackable(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" || strings.ContainsAny(u, "\r\n") {
		return false
	}
	return pu.Scheme == "http" || pu.Scheme == "https"
}

// sign DKIM-signs msg when the domain of its From address is a verified
// domain of the message's team. It runs last, over the final bytes.
func (s *Shaper) sign(m *store.Message, msg []byte, from string) []byte {
	at := strings.LastIndexByte(from, '@')
	if at < 0 {
		return msg
	}
	d, err := s.st.DomainByName(m.TeamID, from[at+1:])
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("domain lookup failed; message not signed", "msg_id", m.ID, "err", err)
		}
		return msg
	}
	if d.Status != store.DomainVerified {
		return msg
	}
	signer, err := s.signer(d)
	if err != nil {
		s.log.Error("DKIM key unusable; message not signed", "msg_id", m.ID, "domain", d.Domain, "err", err)
		return msg
	}
	out, err := shape.Sign(msg, shape.DKIMKey{Domain: d.Domain, Selector: d.Selector, Signer: signer})
	if err != nil {
		s.log.Warn("message not DKIM-signed", "msg_id", m.ID, "domain", d.Domain, "err", err)
		return msg
	}
	return out
}

// signer returns the domain's private key, from the cache when the record
// has not changed since it was parsed.
func (s *Shaper) signer(d *store.Domain) (crypto.Signer, error) {
	s.mu.Lock()
	c, ok := s.keys[d.ID]
	s.mu.Unlock()
	if ok && c.version == d.Version {
		return c.signer, nil
	}
	pem, err := s.sealer.Open(d.PrivateKeySealed)
	if err != nil {
		return nil, err
	}
	signer, err := shape.ParsePrivateKey([]byte(pem))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keys[d.ID] = cachedKey{version: d.Version, signer: signer}
	s.mu.Unlock()
	return signer, nil
}
