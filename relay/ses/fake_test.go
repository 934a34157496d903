package ses

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
)

// The fake speaks the SES v2 wire format as the sesv2 SDK's restJson1
// protocol reads it (smithy-go transport/http/protocol/restjson1):
//   - SendEmail is POST /v2/email/outbound-emails with a JSON body whose
//     blob Content.Raw.Data is standard base64; the answer is 200
//     {"MessageId": "…"}.
//   - GetAccount is GET /v2/email/account, answering the account JSON.
//   - Errors carry the code in the X-Amzn-ErrorType header (anything after
//     ":" is dropped by the SDK), or in the body's "__type" or "code", and
//     the text in the body's "message"; the SDK turns a modelled code into
//     its sesv2/types error and any other into a smithy.GenericAPIError.
//   - Requests are signed with SigV4 for service "ses"; the fake checks
//     the signature with the secret it knows, and answers the way the AWS
//     front end does: 403 UnrecognizedClientException for an unknown key,
//     403 SignatureDoesNotMatch for a wrong secret.

const (
	testRegion = "us-east-1"
	testKeyID  = "AKIDSMTPMUXTEST0001"
	testSecret = "smtpmux/test/secret+key"
)

// reply is one scripted answer of the fake.
type reply struct {
	status  int
	errType string // X-Amzn-ErrorType header
	bodyTyp string // "__type" in the JSON body instead of the header
	message string // "message" in the JSON body
	raw     string // a raw, non-JSON body (e.g. a proxy's HTML page)
	hang    bool   // read the request, then never answer
	drop    bool   // read the request, then close the connection
}

// sendRequest is the SendEmail JSON body. Unknown fields fail the decode,
// so the test notices anything unexpected on the wire.
type sendRequest struct {
	ConfigurationSetName string `json:",omitempty"`
	Content              struct {
		Raw struct{ Data string }
	}
	Destination struct {
		ToAddresses  []string
		CcAddresses  []string
		BccAddresses []string
	}
	FromEmailAddress *string
}

// received is one SendEmail the fake accepted or answered.
type received struct {
	req       sendRequest
	raw       []byte // Content.Raw.Data, decoded
	keyID     string
	messageID string
}

type fakeSES struct {
	t       testing.TB
	srv     *httptest.Server
	secrets map[string]string // key id → secret
	account string            // GetAccount's JSON answer

	mu       sync.Mutex
	script   []reply // answered in order, then success
	always   *reply  // answered every time, when set
	requests int     // requests that passed the signature check
	sends    []received
	done     chan struct{}
}

func newFakeSES(t testing.TB) *fakeSES {
	f := &fakeSES{t: t, secrets: map[string]string{testKeyID: testSecret}, done: make(chan struct{}),
		account: `{"DedicatedIpAutoWarmupEnabled":false,"EnforcementStatus":"HEALTHY","ProductionAccessEnabled":true,` +
			`"SendingEnabled":true,"SendQuota":{"Max24HourSend":50000.0,"MaxSendRate":14.0,"SentLast24Hours":120.0}}`}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.done) // release hanging handlers before Close waits for them
		f.srv.Close()
	})
	return f
}

// config is a provider config pointing at the fake with valid keys.
func (f *fakeSES) config() Config {
	return Config{Region: testRegion, AccessKeyID: testKeyID, SecretAccessKey: testSecret,
		Endpoint: f.srv.URL, Timeout: 5 * time.Second}
}

func (f *fakeSES) setScript(rs ...reply) { f.mu.Lock(); f.script = rs; f.mu.Unlock() }
func (f *fakeSES) setAlways(r reply)     { f.mu.Lock(); f.always = &r; f.mu.Unlock() }

func (f *fakeSES) stats() (int, []received) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, append([]received(nil), f.sends...)
}

func (f *fakeSES) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("X-Amzn-RequestId", fmt.Sprintf("req-%d", time.Now().UnixNano()))
	keyID, ok := f.verifySigV4(w, r, body)
	if !ok {
		return
	}
	f.mu.Lock()
	f.requests++
	rep := f.always
	if rep == nil && len(f.script) > 0 {
		rep, f.script = &f.script[0], f.script[1:]
	}
	f.mu.Unlock()

	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails":
		if rep != nil && f.answer(w, *rep) {
			return
		}
		f.sendEmail(w, r, body, keyID)
	case r.Method == http.MethodGet && r.URL.Path == "/v2/email/account":
		if rep != nil && f.answer(w, *rep) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, f.account)
	default:
		writeError(w, http.StatusNotFound, "UnknownOperationException", "")
	}
}

// answer plays a scripted reply; false means "answer normally".
func (f *fakeSES) answer(w http.ResponseWriter, rep reply) bool {
	switch {
	case rep.hang:
		select {
		case <-f.done:
		case <-time.After(30 * time.Second):
		}
		return true
	case rep.drop:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	case rep.raw != "":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.raw)
		return true
	case rep.bodyTyp != "":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		json.NewEncoder(w).Encode(map[string]string{"__type": rep.bodyTyp, "message": rep.message})
		return true
	case rep.status != 0:
		writeError(w, rep.status, rep.errType, rep.message)
		return true
	}
	return false
}

func writeError(w http.ResponseWriter, status int, errType, message string) {
	if errType != "" {
		w.Header().Set("X-Amzn-ErrorType", errType)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": message})
}

func (f *fakeSES) sendEmail(w http.ResponseWriter, r *http.Request, body []byte, keyID string) {
	var req sendRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		f.t.Errorf("fake SES: SendEmail body %.200q: %v", body, err)
		writeError(w, http.StatusBadRequest, "BadRequestException", err.Error())
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("fake SES: Content-Type %q", ct)
	}
	raw, err := base64.StdEncoding.DecodeString(req.Content.Raw.Data)
	if err != nil {
		f.t.Errorf("fake SES: Raw.Data is not standard base64: %v", err)
	}
	f.mu.Lock()
	id := fmt.Sprintf("0100018f-fake-%04d-000000", len(f.sends)+1)
	f.sends = append(f.sends, received{req: req, raw: raw, keyID: keyID, messageID: id})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"MessageId": id})
}

// verifySigV4 recomputes the request's signature with the SDK's signer
// over exactly the headers the client says it signed, and answers an auth
// error itself when it does not match.
func (f *fakeSES) verifySigV4(w http.ResponseWriter, r *http.Request, body []byte) (string, bool) {
	authz := r.Header.Get("Authorization")
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(authz, algo) {
		writeError(w, http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return "", false
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(authz, algo), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/") // key/date/region/service/aws4_request
	if len(scope) != 5 || scope[2] != testRegion || scope[3] != "ses" || scope[4] != "aws4_request" {
		f.t.Errorf("fake SES: credential scope %q", fields["Credential"])
		writeError(w, http.StatusForbidden, "IncompleteSignatureException", "bad credential scope")
		return "", false
	}
	secret, ok := f.secrets[scope[0]]
	if !ok {
		writeError(w, http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return "", false
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		writeError(w, http.StatusForbidden, "IncompleteSignatureException", "missing X-Amz-Date")
		return "", false
	}
	check, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host":
		case "content-length":
			check.ContentLength = r.ContentLength
		default:
			check.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: scope[0], SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, check, hex.EncodeToString(sum[:]),
		"ses", testRegion, when); err != nil {
		f.t.Errorf("fake SES: re-signing: %v", err)
		return "", false
	}
	if check.Header.Get("Authorization") != authz {
		writeError(w, http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided.")
		return "", false
	}
	return scope[0], true
}

// message has CRLF lines, a long line, 8-bit bytes that are not UTF-8 and
// a NUL, so equality after base64 and JSON proves the transfer is exact.
const message = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n" +
	"Subject: smtpmux via SES\r\nMessage-ID: <eml_test@smtpmux>\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n.a line with a dot\r\n" +
	"caf\xc3\xa9 \xff\xfe raw \x00 bytes\r\n-- \r\nAlice\r\n"

func newProvider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func envelope(to ...string) relay.Envelope {
	if len(to) == 0 {
		to = []string{"bob@example.net"}
	}
	return relay.Envelope{MessageID: "eml_test", From: "bounces@example.com", To: to}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// want is the expected shape of a failure.
type want struct {
	class    routing.Class
	phase    routing.Phase
	code     int
	text     string // substring of Failure.Text; "" = unchecked
	bodySent bool
}

func (w want) check(t testing.TB, err error) *relay.DeliveryError {
	t.Helper()
	var derr *relay.DeliveryError
	if !errors.As(err, &derr) {
		t.Fatalf("error %v (%T) is not a *relay.DeliveryError", err, err)
	}
	f := derr.Failure
	if derr.Class == nil && f.Phase != routing.PhaseAPI {
		// SES's answers go through routing's table (PhaseAPI); what
		// the provider decides itself it must say explicitly.
		t.Errorf("Class not set explicitly (failure %+v)", f)
	}
	if c := derr.Classified(); c != w.class {
		t.Errorf("class = %v, want %v (failure %+v, err %v)", c, w.class, f, derr.Err)
	}
	if f.Phase != w.phase {
		t.Errorf("phase = %q, want %q", f.Phase, w.phase)
	}
	if f.Code != w.code {
		t.Errorf("code = %d, want %d", f.Code, w.code)
	}
	if w.text != "" && !strings.Contains(f.Text, w.text) {
		t.Errorf("text = %q, want it to contain %q", f.Text, w.text)
	}
	if f.BodySent != w.bodySent {
		t.Errorf("body sent = %v, want %v", f.BodySent, w.bodySent)
	}
	return derr
}
