package bounce

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

const (
	testTopic   = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
	testCertURL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"
)

// snsPeer is a stand-in for Amazon SNS: it signs notifications with its
// own generated RSA certificate and serves that certificate (and the
// subscription URL) over TLS on 127.0.0.1, where the verifier's test
// seam sends requests for sns.eu-west-1.amazonaws.com.
type snsPeer struct {
	key       *rsa.PrivateKey
	certPEM   []byte
	srv       *httptest.Server
	certGets  atomic.Int32
	confirmed atomic.Int32
	mu        sync.Mutex
	n         int
}

func newSNSPeer(t *testing.T) *snsPeer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := &snsPeer{key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem":
			p.certGets.Add(1)
			w.Write(p.certPEM)
		case r.URL.Path == "/SimpleNotificationService-0000000000000000.pem":
			w.Write(bytes.Repeat([]byte("A"), 1<<20))
		case r.URL.Query().Get("Action") == "ConfirmSubscription":
			p.confirmed.Add(1)
			w.Write([]byte("<ConfirmSubscriptionResponse/>"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// sign fills MessageId (if empty), Timestamp (if empty), cert URL and
// signature of m with version v.
func (p *snsPeer) sign(t *testing.T, m map[string]any, v string) map[string]any {
	t.Helper()
	p.mu.Lock()
	p.n++
	if m["MessageId"] == nil {
		m["MessageId"] = fmt.Sprintf("sns-msg-%d-%d", time.Now().UnixNano(), p.n)
	}
	p.mu.Unlock()
	if m["Timestamp"] == nil {
		m["Timestamp"] = time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if m["SigningCertURL"] == nil {
		m["SigningCertURL"] = testCertURL
	}
	m["SignatureVersion"] = v
	s := func(k string) string { x, _ := m[k].(string); return x }
	msg := SNSMessage{Type: s("Type"), MessageID: s("MessageId"), Token: s("Token"), TopicArn: s("TopicArn"),
		Message: s("Message"), Timestamp: s("Timestamp"), SubscribeURL: s("SubscribeURL")}
	if sub, ok := m["Subject"].(string); ok {
		msg.Subject, msg.subjectSet = sub, true
	}
	var sig []byte
	var err error
	if v == "1" {
		d := sha1.Sum([]byte(msg.canonical()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA1, d[:])
	} else {
		d := sha256.Sum256([]byte(msg.canonical()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, d[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	return m
}

type hookEnv struct {
	st       *store.Store
	hook     *SESHook
	peer     *snsPeer
	srv      *httptest.Server
	own      *store.Provider // team_a's own SES
	managedA *store.Provider
	managedB *store.Provider
	otherOwn *store.Provider // team_b's own SES, same topic
}

func newHookEnv(t *testing.T) *hookEnv {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "t.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &hookEnv{st: st, peer: newSNSPeer(t)}
	mk := func(team, typ string, managed bool, topic string) *store.Provider {
		p := &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: team, Name: typ, Type: typ, Managed: managed,
			Status: state.ProviderActive, SESRegion: "eu-west-1", SNSTopicARN: topic, CreatedAt: time.Now()}
		if err := st.CreateProvider(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.own = mk("team_a", store.TypeSES, false, testTopic)
	e.otherOwn = mk("team_b", store.TypeSES, false, testTopic)
	e.managedA = mk("team_a", store.TypeManagedSES, true, "")
	e.managedB = mk("team_b", store.TypeManagedSES, true, "")
	v := NewSNSVerifier()
	v.Client = e.peer.srv.Client()
	v.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v.TestBaseURL = e.peer.srv.URL
	rec := NewRecorder(st, nil, nil, nil, nil)
	e.hook = NewSESHook(SESHookConfig{ManagedTopicARN: "arn:aws:sns:eu-west-1:999999999999:managed"}, st, rec, v, nil, nil)
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/ses/{id}", e.hook)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// sent stores a message of team sent through provider p, which SES
// accepted as sesID.
func (e *hookEnv) sent(t *testing.T, team string, p *store.Provider, sesID string, rcpts ...string) *store.Message {
	t.Helper()
	now := time.Now().UTC()
	m := &store.Message{ID: store.NewID(store.PrefixMessage), TeamID: team, From: "a@example.com", Status: state.MessagePending,
		NextAttemptAt: now, CreatedAt: now}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, store.Recipient{Address: r, Status: state.MessagePending})
	}
	if err := e.st.Enqueue(m, []byte("x")); err != nil {
		t.Fatal(err)
	}
	got, err := e.st.UpdateMessage(m.ID, func(m *store.Message) error {
		m.Attempts = append(m.Attempts, store.Attempt{N: 1, ProviderID: p.ID, ProviderType: p.Type, StartedAt: now,
			Status: state.AttemptSent, UpstreamID: sesID})
		for i := range m.Recipients {
			m.Recipients[i].Status = state.MessageSent
		}
		m.Status, m.State = state.MessageSent, store.StateDone
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *hookEnv) post(t *testing.T, providerID string, body any) int {
	t.Helper()
	var b []byte
	switch x := body.(type) {
	case []byte:
		b = x
	default:
		b, _ = json.Marshal(x)
	}
	resp, err := http.Post(e.srv.URL+"/hooks/ses/"+providerID, "text/plain; charset=UTF-8", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func notif(topic, sesMessage string) map[string]any {
	return map[string]any{"Type": "Notification", "TopicArn": topic, "Message": sesMessage}
}

func bounceJSON(sesID, rcpt, status string) string {
	return fmt.Sprintf(`{"notificationType":"Bounce","mail":{"messageId":%q},"bounce":{"bounceType":"Permanent","bounceSubType":"General",
"bouncedRecipients":[{"emailAddress":%q,"action":"failed","status":%q,"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]}}`, sesID, rcpt, status)
}

func complaintEventJSON(sesID, rcpt string) string {
	return fmt.Sprintf(`{"eventType":"Complaint","mail":{"messageId":%q},"complaint":{"complainedRecipients":[{"emailAddress":%q}],"complaintFeedbackType":"abuse"}}`, sesID, rcpt)
}

func suppressed(t *testing.T, st *store.Store, team, addr string) *store.Suppression {
	t.Helper()
	s, err := st.Suppressed(team, addr)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSESHookRecords: signed Bounce (direct SNS shape, SignatureVersion 1)
// and Complaint (event publishing, SignatureVersion 2) notifications land
// on the message by its SES MessageId and suppress the recipient, with
// source "ses"; the certificate is fetched once; Delivery records nothing.
func TestSESHookRecords(t *testing.T) {
	e := newHookEnv(t)
	m1 := e.sent(t, "team_a", e.own, "ses-0001", "gone@x.test", "ok@x.test")
	m2 := e.sent(t, "team_a", e.own, "ses-0002", "angry@x.test")
	if c := e.post(t, e.own.ID, e.peer.sign(t, notif(testTopic, bounceJSON("ses-0001", "gone@x.test", "5.1.1")), "1")); c != 200 {
		t.Fatalf("bounce: %d", c)
	}
	if c := e.post(t, e.own.ID, e.peer.sign(t, notif(testTopic, complaintEventJSON("ses-0002", "angry@x.test")), "2")); c != 200 {
		t.Fatalf("complaint: %d", c)
	}
	withSubject := notif(testTopic, `{"notificationType":"Delivery","mail":{"messageId":"ses-0001"},"delivery":{"recipients":["ok@x.test"]}}`)
	withSubject["Subject"] = "Amazon SES Email Event Notification"
	if c := e.post(t, e.own.ID, e.peer.sign(t, withSubject, "2")); c != 200 {
		t.Fatalf("delivery: %d", c)
	}
	if s := suppressed(t, e.st, "team_a", "gone@x.test"); s == nil || s.Reason != store.SuppressHardBounce || s.Source != "ses" || s.MessageID != m1.ID {
		t.Fatalf("bounce suppression: %+v", s)
	}
	if s := suppressed(t, e.st, "team_a", "angry@x.test"); s == nil || s.Reason != store.SuppressComplaint || s.MessageID != m2.ID {
		t.Fatalf("complaint suppression: %+v", s)
	}
	if s := suppressed(t, e.st, "team_a", "ok@x.test"); s != nil {
		t.Fatalf("delivered recipient suppressed: %+v", s)
	}
	got, _ := e.st.Message(m1.ID)
	if fb := got.Recipients[0].Feedback; len(fb) != 1 || fb[0].Source != "ses" || fb[0].Status != "5.1.1" || fb[0].Type != store.BounceHard {
		t.Fatalf("feedback: %+v", fb)
	}
	if n := e.peer.certGets.Load(); n != 1 {
		t.Fatalf("certificate fetched %d times, want 1", n)
	}
}

// TestSESHookManaged: the managed account's topic is accepted on any
// team's managed provider and records on the message's own team; a
// team's own-SES endpoint cannot speak about another team's message.
func TestSESHookManaged(t *testing.T) {
	e := newHookEnv(t)
	managed := "arn:aws:sns:eu-west-1:999999999999:managed"
	e.sent(t, "team_b", e.managedB, "ses-m1", "x@y.test")
	if c := e.post(t, e.managedA.ID, e.peer.sign(t, notif(managed, bounceJSON("ses-m1", "x@y.test", "")), "2")); c != 200 {
		t.Fatalf("managed bounce: %d", c)
	}
	if s := suppressed(t, e.st, "team_b", "x@y.test"); s == nil || s.Reason != store.SuppressHardBounce {
		t.Fatalf("managed bounce not recorded on team_b: %+v", s)
	}
	if s := suppressed(t, e.st, "team_a", "x@y.test"); s != nil {
		t.Fatalf("recorded on the wrong team: %+v", s)
	}
	// The account-wide id takes the managed topic, and only it.
	e.sent(t, "team_a", e.managedA, "ses-m2", "z@y.test")
	if c := e.post(t, ManagedHookID, e.peer.sign(t, notif(managed, bounceJSON("ses-m2", "z@y.test", "5.1.1")), "1")); c != 200 {
		t.Fatalf("managed id: %d", c)
	}
	if s := suppressed(t, e.st, "team_a", "z@y.test"); s == nil {
		t.Fatal("bounce posted to /hooks/ses/managed not recorded")
	}
	if c := e.post(t, ManagedHookID, e.peer.sign(t, notif(testTopic, bounceJSON("ses-a0", "z@y.test", "5.1.1")), "1")); c != 403 {
		t.Fatalf("own topic on the managed id: %d, want 403", c)
	}
	// team_b's own SES topic posts about team_a's own-SES message: ignored.
	e.sent(t, "team_a", e.own, "ses-a1", "victim@x.test")
	if c := e.post(t, e.otherOwn.ID, e.peer.sign(t, notif(testTopic, bounceJSON("ses-a1", "victim@x.test", "5.1.1")), "2")); c != 200 {
		t.Fatalf("foreign: %d", c)
	}
	if s := suppressed(t, e.st, "team_a", "victim@x.test"); s != nil {
		t.Fatalf("another team's endpoint suppressed team_a's recipient: %+v", s)
	}
}

// TestSESHookRefuses: forged signatures, certificate URLs off the SNS
// host (SSRF), a topic not configured for the provider, replays, stale
// Timestamps, unknown or non-SES providers, huge bodies and junk are all
// refused and record nothing.
func TestSESHookRefuses(t *testing.T) {
	e := newHookEnv(t)
	e.sent(t, "team_a", e.own, "ses-r1", "r@x.test")
	good := func() map[string]any { return notif(testTopic, bounceJSON("ses-r1", "r@x.test", "5.1.1")) }
	forged := e.peer.sign(t, good(), "2")
	forged["Message"] = bounceJSON("ses-r1", "r@x.test", "5.1.2")
	other := newSNSPeer(t) // a stranger's own key, cert served at the same URL path
	_ = other
	strangerKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	stranger := &snsPeer{key: strangerKey}
	cases := []struct {
		name string
		id   string
		body any
		want int
	}{
		{"forged message", e.own.ID, forged, 403},
		{"signed by another key", e.own.ID, stranger.sign(t, good(), "2"), 403},
		{"cert on another host", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://evil.example/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"), "2"), 403},
		{"cert on loopback", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://127.0.0.1/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"), "2"), 403},
		{"cert host suffix trick", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem"), "2"), 403},
		{"cert over http", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"), "2"), 403},
		{"cert of another region", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"), "2"), 403},
		{"cert with userinfo", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://sns.eu-west-1.amazonaws.com@evil.example/x.pem"), "2"), 403},
		{"huge cert", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000.pem"), "2"), 403},
		{"other path on the SNS host", e.own.ID, e.peer.sign(t, with(good(), "SigningCertURL", "https://sns.eu-west-1.amazonaws.com/?Action=Subscribe&x=.pem"), "2"), 403},
		{"unknown signature version", e.own.ID, e.peer.sign(t, good(), "3"), 403},
		{"topic not configured", e.own.ID, e.peer.sign(t, notif("arn:aws:sns:eu-west-1:123456789012:other", bounceJSON("ses-r1", "r@x.test", "5.1.1")), "2"), 403},
		{"stale", e.own.ID, e.peer.sign(t, with(good(), "Timestamp", time.Now().Add(-61*time.Minute).UTC().Format(time.RFC3339Nano)), "2"), 403},
		{"future", e.own.ID, e.peer.sign(t, with(good(), "Timestamp", time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)), "2"), 403},
		{"unknown provider", "dprov_nope", e.peer.sign(t, good(), "2"), 403},
		{"managed topic on own provider", e.own.ID, e.peer.sign(t, notif("arn:aws:sns:eu-west-1:999999999999:managed", bounceJSON("ses-r1", "r@x.test", "5.1.1")), "2"), 403},
		{"junk", e.own.ID, []byte("{not json"), 400},
		{"huge body", e.own.ID, bytes.Repeat([]byte("x"), maxSNSBody+1), 413},
	}
	for _, c := range cases {
		if got := e.post(t, c.id, c.body); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	if s := suppressed(t, e.st, "team_a", "r@x.test"); s != nil {
		t.Fatalf("a refused post recorded: %+v", s)
	}
	// A real one, then its replay.
	ok := e.peer.sign(t, good(), "1")
	if c := e.post(t, e.own.ID, ok); c != 200 {
		t.Fatalf("genuine: %d", c)
	}
	if c := e.post(t, e.own.ID, ok); c != 409 {
		t.Fatalf("replay: %d, want 409", c)
	}
}

// TestSESHookSubscription: a signed SubscriptionConfirmation makes the
// hook visit its SubscribeURL (on the SNS host, via the seam); one whose
// SubscribeURL points elsewhere is not followed.
func TestSESHookSubscription(t *testing.T) {
	e := newHookEnv(t)
	sub := func(u string) map[string]any {
		return map[string]any{"Type": "SubscriptionConfirmation", "TopicArn": testTopic, "Token": "tok",
			"Message": "You have chosen to subscribe", "SubscribeURL": u}
	}
	good := "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + testTopic + "&Token=tok"
	if c := e.post(t, e.own.ID, e.peer.sign(t, sub(good), "1")); c != 200 {
		t.Fatalf("confirmation: %d", c)
	}
	if n := e.peer.confirmed.Load(); n != 1 {
		t.Fatalf("SubscribeURL visited %d times", n)
	}
	for _, bad := range []string{"https://evil.example/?Action=ConfirmSubscription", "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
		"https://sns.eu-west-1.amazonaws.com:8443/?Action=ConfirmSubscription", "https://169.254.169.254/latest/meta-data/"} {
		if c := e.post(t, e.own.ID, e.peer.sign(t, sub(bad), "2")); c != 422 {
			t.Errorf("%s: %d, want 422", bad, c)
		}
	}
	if n := e.peer.confirmed.Load(); n != 1 {
		t.Fatalf("a bad SubscribeURL was visited (%d visits)", n)
	}
	// Without the seam the product path requests the real host only: the
	// URL check refuses 127.0.0.1 before any request.
	if _, err := snsURL("https://127.0.0.1:"+strings.Split(e.peer.srv.URL, ":")[2]+"/x.pem", "eu-west-1"); err == nil {
		t.Fatal("loopback accepted as an SNS host")
	}
}

func with(m map[string]any, k, v string) map[string]any {
	m[k] = v
	return m
}

// TestReplayCacheBounded: a provider's flood of ids pushes out only its
// own; another provider's remembered ids stay refused as replays.
func TestReplayCacheBounded(t *testing.T) {
	c := replayCache{max: 100}
	now := time.Unix(1_000_000, 0)
	exp := now.Add(time.Hour)
	if !c.claim("victim", "v1", now, exp) || c.claim("victim", "v1", now, exp) {
		t.Fatal("first claim must pass, the second must not")
	}
	for i := 0; i < 1000; i++ {
		if !c.claim("flooder", fmt.Sprint(i), now, exp) {
			t.Fatalf("flood id %d refused: a full cache must not refuse new ids", i)
		}
	}
	if len(c.seen["flooder"]) > 100 {
		t.Fatalf("flooder keeps %d ids, cap 100", len(c.seen["flooder"]))
	}
	if c.claim("victim", "v1", now, exp) {
		t.Fatal("another provider's flood made a replay pass")
	}
	if !c.claim("victim", "v1", exp, exp.Add(time.Hour)) {
		t.Fatal("an expired id must be accepted again")
	}
}
