package ses

import (
	"encoding/json"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests against aws-ses-v2-local (npm package, a local SES v1/v2 API that
// nobody here wrote). Install it for a run with
//
//	cd <repo> && npm install --no-save aws-ses-v2-local@2.10.2
//
// Its raw SendEmail parses the MIME message and stores what it finds at
// GET /store; note that it takes the recipients from the To/Cc/Bcc
// headers, not from Destination, so envelope-only (Bcc) recipients are
// covered by the fake in fake_test.go instead. GetAccount answers the
// JSON in its AWS_SES_ACCOUNT environment variable.

// peerAccount is GetAccount's answer; the peer validates its shape.
const peerAccount = `{"DedicatedIpAutoWarmupEnabled":false,"Details":{"AdditionalContactEmailAddresses":[],` +
	`"ContactLanguage":"EN","MailType":"TRANSACTIONAL","ReviewDetails":{"CaseId":"1","Status":"GRANTED"},` +
	`"UseCaseDescription":"tests","WebsiteURL":"https://example.com"},"EnforcementStatus":"HEALTHY",` +
	`"ProductionAccessEnabled":true,"SendingEnabled":true,` +
	`"SendQuota":{"Max24HourSend":200,"MaxSendRate":1,"SentLast24Hours":7},` +
	`"SuppressionAttributes":{"SuppressedReasons":[]}}`

const peerMessage = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n" +
	"Cc: carol@example.org\r\nSubject: smtpmux via aws-ses-v2-local\r\nMessage-ID: <eml_peer@smtpmux>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
	"Hello Bob,\r\nthis came through smtpmux. Gr\xc3\xbc\xc3\x9fe!\r\n"

func TestAWSSESv2Local(t *testing.T) {
	base := startSESLocal(t)
	p := newProvider(t, Config{Region: testRegion, AccessKeyID: "ANY_KEY", SecretAccessKey: "ANY_SECRET",
		Endpoint: base, Timeout: 10 * time.Second})

	env := envelope("bob@example.net", "carol@example.org", "dave@example.com") // dave: Bcc
	env.From = "alice@example.com"
	res, err := p.Send(ctxTimeout(t, 10*time.Second), env, []byte(peerMessage))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	var store struct {
		Emails []struct {
			MessageID   string `json:"messageId"`
			From        string `json:"from"`
			Subject     string `json:"subject"`
			Destination struct{ To, Cc []string }
			Body        struct{ Text string }
		}
	}
	getJSON(t, base+"/store", &store)
	if len(store.Emails) != 1 {
		t.Fatalf("store has %d emails, want 1: %+v", len(store.Emails), store.Emails)
	}
	m := store.Emails[0]
	if m.MessageID == "" || m.MessageID != res.UpstreamID || res.Reply != "SES accepted MessageId="+m.MessageID {
		t.Errorf("stored id %q, result %+v", m.MessageID, res)
	}
	if m.Subject != "smtpmux via aws-ses-v2-local" {
		t.Errorf("subject = %q", m.Subject)
	}
	if !strings.Contains(m.From, "alice@example.com") {
		t.Errorf("from = %q", m.From)
	}
	if !slices.ContainsFunc(m.Destination.To, func(s string) bool { return strings.Contains(s, "bob@example.net") }) ||
		!slices.ContainsFunc(m.Destination.Cc, func(s string) bool { return strings.Contains(s, "carol@example.org") }) {
		t.Errorf("destination = %+v", m.Destination)
	}
	if !strings.Contains(m.Body.Text, "Hello Bob,\nthis came through smtpmux. Grüße!") {
		t.Errorf("body = %q", m.Body.Text)
	}

	// The /test path: GetAccount answers the account configured above.
	latency, msg, err := p.TestDetail(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatalf("TestDetail: %v", err)
	}
	if want := "SES account reachable: quota 200 per 24h, max 1/s, sent 7 in the last 24h"; msg != want || latency <= 0 {
		t.Errorf("TestDetail = %v, %q; want %q", latency, msg, want)
	}
}

// startSESLocal runs aws-ses-v2-local on a free loopback port and returns
// its base URL. A missing peer skips the test, except under CI, where the
// suite must not go green by silently testing less.
func startSESLocal(t *testing.T) string {
	t.Helper()
	return testpeer.StartSESLocal(t, peerAccount)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
