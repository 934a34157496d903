package bounce

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" // #nosec: SNS SignatureVersion 1 is SHA1withRSA by AWS's definition
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// SNS message types (the Type field).
const (
	snsNotification   = "Notification"
	snsSubscribe      = "SubscriptionConfirmation"
	snsUnsubscribe    = "UnsubscribeConfirmation"
	maxSNSCertBytes   = 16 << 10 // a PEM certificate is ~2 KB
	maxCachedSNSCerts = 64
)

// SNSMessage is an Amazon SNS HTTP(S) delivery, as posted.
type SNSMessage struct {
	Type             string `json:"Type"`
	MessageID        string `json:"MessageId"`
	Token            string `json:"Token"`
	TopicArn         string `json:"TopicArn"`
	Subject          string `json:"Subject"`
	Message          string `json:"Message"`
	Timestamp        string `json:"Timestamp"`
	SignatureVersion string `json:"SignatureVersion"`
	Signature        string `json:"Signature"`
	SigningCertURL   string `json:"SigningCertURL"`
	SubscribeURL     string `json:"SubscribeURL"`
	UnsubscribeURL   string `json:"UnsubscribeURL"`
	// subjectSet tells an empty Subject from none: only a present one is
	// part of the signed string.
	subjectSet bool
}

// snsHostRE is the only host a signing certificate or a subscription URL
// may live on: Amazon SNS's regional endpoint (and its China partition).
var snsHostRE = regexp.MustCompile(`^sns\.([a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(?:\.cn)?$`)

// certPathRE is the path of SNS's signing certificates
// (/SimpleNotificationService-<hex>.pem): nothing else on the host is
// fetched.
var certPathRE = regexp.MustCompile(`^/SimpleNotificationService-[0-9a-f]{16,64}\.pem$`)

// topicARNRE is an SNS topic ARN: arn:<partition>:sns:<region>:<account>:<name>.
var topicARNRE = regexp.MustCompile(`^arn:aws(?:-cn|-us-gov)?:sns:([a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}):[0-9]{12}:[A-Za-z0-9_.-]{1,256}$`)

// ValidTopicARN reports whether s is an SNS topic ARN (config checks).
func ValidTopicARN(s string) bool { return topicARNRE.MatchString(s) }

// Errors of verification; all are refusals of the notification.
var (
	errSNSURL       = errors.New("sns: URL is not an https URL on sns.<region>.amazonaws.com")
	errSNSSignature = errors.New("sns: signature does not verify")
	errSNSShape     = errors.New("sns: malformed message")
)

// snsURL checks that raw is https on the SNS host of region (the region
// of the topic the message claims) with no user, port, query tricks
// beyond what SNS itself uses, and returns it parsed.
func snsURL(raw, region string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, errSNSURL
	}
	m := snsHostRE.FindStringSubmatch(u.Host)
	if m == nil || m[1] != region {
		return nil, errSNSURL
	}
	return u, nil
}

// topicRegion is the region of a topic ARN, "" if it is none.
func topicRegion(arn string) string {
	if m := topicARNRE.FindStringSubmatch(arn); m != nil {
		return m[1]
	}
	return ""
}

// canonical is the string SNS signs, per AWS's documented field order:
// for a Notification Message, MessageId, Subject (only when present),
// Timestamp, TopicArn, Type; for (Un)SubscriptionConfirmation Message,
// MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type. Each field
// is "Name\nValue\n".
func (m *SNSMessage) canonical() string {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == snsNotification {
		if m.subjectSet {
			add("Subject", m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
		return b.String()
	}
	add("SubscribeURL", m.SubscribeURL)
	add("Timestamp", m.Timestamp)
	add("Token", m.Token)
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	return b.String()
}

// SNSVerifier checks SNS signatures with certificates fetched from SNS's
// own hosts, each fetched once and cached.
type SNSVerifier struct {
	// Client fetches certificates and visits subscription URLs. It
	// follows no redirects (a redirect could lead off the SNS host).
	Client *http.Client
	// TestBaseURL, set only by tests, is where a validated SNS URL is
	// sent instead of its own scheme and host (the test peer on
	// 127.0.0.1): the URL must still pass the SNS host check, so the
	// product path never reaches another host.
	TestBaseURL string

	mu    sync.Mutex
	certs map[string]*rsa.PublicKey
	// fetching holds the fetch in progress per URL, so that a burst of
	// posts naming one certificate fetches it once, while a slow or
	// failing fetch of one URL (someone's made-up name) delays no other.
	fetching map[string]*certFetch
}

// certFetch is one certificate fetch that other requests for the same
// URL wait on.
type certFetch struct {
	done chan struct{}
	key  *rsa.PublicKey
	err  error
}

// NewSNSVerifier returns a verifier whose client times out after 10 s
// and follows no redirects.
func NewSNSVerifier() *SNSVerifier {
	return &SNSVerifier{Client: &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// target is where a validated SNS URL is actually requested.
func (v *SNSVerifier) target(u *url.URL) string {
	if v.TestBaseURL == "" {
		return u.String()
	}
	return strings.TrimSuffix(v.TestBaseURL, "/") + u.RequestURI()
}

// Verify checks m's signature against the certificate its
// SigningCertURL names, which must be on the SNS host of the topic's
// region.
func (v *SNSVerifier) Verify(ctx context.Context, m *SNSMessage) error {
	region := topicRegion(m.TopicArn)
	if region == "" {
		return errSNSShape
	}
	u, err := snsURL(m.SigningCertURL, region)
	if err != nil {
		return err
	}
	if !certPathRE.MatchString(u.Path) || u.RawQuery != "" {
		return errSNSURL
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) == 0 {
		return errSNSSignature
	}
	var h crypto.Hash
	switch m.SignatureVersion {
	case "1":
		h = crypto.SHA1
	case "2":
		h = crypto.SHA256
	default:
		return errSNSSignature
	}
	key, err := v.cert(ctx, u)
	if err != nil {
		return err
	}
	msg := []byte(m.canonical())
	var digest []byte
	if h == crypto.SHA1 {
		d := sha1.Sum(msg)
		digest = d[:]
	} else {
		d := sha256.Sum256(msg)
		digest = d[:]
	}
	if rsa.VerifyPKCS1v15(key, h, digest, sig) != nil {
		return errSNSSignature
	}
	return nil
}

// cert returns the public key of the certificate at u, from the cache or
// fetched (at most maxSNSCertBytes).
func (v *SNSVerifier) cert(ctx context.Context, u *url.URL) (*rsa.PublicKey, error) {
	key := u.String()
	v.mu.Lock()
	if k := v.certs[key]; k != nil {
		v.mu.Unlock()
		return k, nil
	}
	if f := v.fetching[key]; f != nil {
		v.mu.Unlock()
		select {
		case <-f.done:
			return f.key, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if v.fetching == nil {
		v.fetching = map[string]*certFetch{}
	}
	f := &certFetch{done: make(chan struct{})}
	v.fetching[key] = f
	v.mu.Unlock()
	f.key, f.err = v.fetchCert(ctx, u)
	v.mu.Lock()
	delete(v.fetching, key)
	if f.err == nil {
		if v.certs == nil || len(v.certs) >= maxCachedSNSCerts {
			// SNS rotates its certificate rarely; a full cache means
			// something odd, and starting over keeps it bounded.
			v.certs = map[string]*rsa.PublicKey{}
		}
		v.certs[key] = f.key
	}
	v.mu.Unlock()
	close(f.done)
	return f.key, f.err
}

// fetchCert fetches and parses the certificate at u.
func (v *SNSVerifier) fetchCert(ctx context.Context, u *url.URL) (*rsa.PublicKey, error) {
	body, err := v.get(ctx, u, maxSNSCertBytes)
	if err != nil {
		return nil, fmt.Errorf("sns: fetching the signing certificate: %w", err)
	}
	blk, _ := pem.Decode(body)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("sns: signing certificate is not a PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sns: signing certificate: %w", err)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("sns: signing certificate has no RSA key")
	}
	return pub, nil
}

// get fetches u (already validated), reading at most limit bytes.
func (v *SNSVerifier) get(ctx context.Context, u *url.URL, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.target(u), nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errors.New("response too large")
	}
	return b, nil
}

// Confirm visits m's SubscribeURL, which must be https on the SNS host of
// the topic's region, completing the subscription.
func (v *SNSVerifier) Confirm(ctx context.Context, m *SNSMessage) error {
	u, err := snsURL(m.SubscribeURL, topicRegion(m.TopicArn))
	if err != nil {
		return err
	}
	_, err = v.get(ctx, u, 64<<10)
	return err
}

// replayCache remembers the SNS MessageIds accepted within the freshness
// window, so that a captured post cannot be replayed while its Timestamp
// is still fresh; older ones are refused as stale. Ids are kept per
// provider, each provider's set bounded, so that a team publishing a
// flood to its own topic pushes out only its own ids; a pushed-out id
// replayed is recorded again, which the Recorder makes harmless (a report
// counts once per recipient).
type replayCache struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // provider → MessageId → when it may be forgotten
	max  int                             // ids per provider
}

// claim reserves provider's id until expires; false if it was seen (or is
// being handled). A reservation whose handling failed is released with
// drop, so SNS's retry of it is processed.
func (c *replayCache) claim(provider, id string, now, expires time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]map[string]time.Time{}
	}
	ids := c.seen[provider]
	if ids == nil {
		ids = map[string]time.Time{}
		c.seen[provider] = ids
	}
	if t, ok := ids[id]; ok && now.Before(t) {
		return false
	}
	if len(ids) >= c.max {
		for k, t := range ids {
			if !now.Before(t) {
				delete(ids, k)
			}
		}
		for k := range ids { // still full: push out an arbitrary tenth
			if len(ids) < c.max-c.max/10 {
				break
			}
			delete(ids, k)
		}
	}
	ids[id] = expires
	return true
}

func (c *replayCache) drop(provider, id string) {
	c.mu.Lock()
	delete(c.seen[provider], id)
	c.mu.Unlock()
}
