package ses

import (
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
)

func TestTestDetailSummarisesQuota(t *testing.T) {
	f := newFakeSES(t)
	p := newProvider(t, f.config())
	latency, msg, err := p.TestDetail(ctxTimeout(t, 5*time.Second))
	if err != nil {
		t.Fatalf("TestDetail: %v", err)
	}
	if latency <= 0 {
		t.Errorf("latency = %v", latency)
	}
	const wantMsg = "SES account reachable: quota 50000 per 24h, max 14/s, sent 120 in the last 24h"
	if msg != wantMsg {
		t.Errorf("message = %q\nwant %q", msg, wantMsg)
	}
	if _, err := p.Test(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Errorf("Test: %v", err)
	}
	if n, sends := f.stats(); n != 2 || len(sends) != 0 {
		t.Errorf("fake saw %d requests and %d sends; a test must send nothing", n, len(sends))
	}
}

func TestTestDetailAccountStates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		account string
		msg     string // substring of the message
		wantErr bool
	}{
		{"sandbox, unlimited",
			`{"ProductionAccessEnabled":false,"SendingEnabled":true,"SendQuota":{"Max24HourSend":-1,"MaxSendRate":1,"SentLast24Hours":0}}`,
			"quota unlimited per 24h, max 1/s, sent 0 in the last 24h; sandbox (only verified recipients)", false},
		{"sending disabled",
			`{"ProductionAccessEnabled":true,"SendingEnabled":false,"EnforcementStatus":"SHUTDOWN","SendQuota":{"Max24HourSend":200,"MaxSendRate":1,"SentLast24Hours":3}}`,
			"sending disabled; enforcement status SHUTDOWN", true},
		{"no quota block", `{"ProductionAccessEnabled":true,"SendingEnabled":true}`, "SES account reachable", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSES(t)
			f.account = tc.account
			p := newProvider(t, f.config())
			_, msg, err := p.TestDetail(ctxTimeout(t, 5*time.Second))
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", msg, tc.msg)
			}
			if tc.wantErr {
				want{class: routing.Auth, phase: routing.PhaseAuth, text: "sending is disabled (enforcement status SHUTDOWN)"}.check(t, err)
			} else if err != nil {
				t.Errorf("TestDetail: %v", err)
			}
		})
	}
}

func TestTestFailures(t *testing.T) {
	f := newFakeSES(t)
	cfg := f.config()
	cfg.SecretAccessKey = "wrong"
	p := newProvider(t, cfg)
	_, err := p.Test(ctxTimeout(t, 5*time.Second))
	want{class: routing.Auth, phase: routing.PhaseAPI, code: 403, text: "SignatureDoesNotMatch"}.check(t, err)

	// A hang during a test is a connection failure (nothing was sent, so
	// nothing is uncertain), and wraps the deadline so the API can call
	// the result "deferred".
	f.setAlways(reply{hang: true})
	_, err = newProvider(t, f.config()).Test(ctxTimeout(t, 200*time.Millisecond))
	want{class: routing.Connection, phase: routing.PhaseData}.check(t, err)
	if !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("err = %v, want a deadline", err)
	}
}

// With no keys configured, the AWS default chain supplies them; here from
// the environment, with shared files and instance metadata out of reach.
func TestDefaultCredentialChain(t *testing.T) {
	isolateAWSEnv(t)
	f := newFakeSES(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	cfg := f.config()
	cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
	p := newProvider(t, cfg)
	if _, err := p.Send(ctxTimeout(t, 5*time.Second), envelope(), []byte(message)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if _, sends := f.stats(); len(sends) != 1 || sends[0].keyID != testKeyID {
		t.Fatalf("sends = %+v, want one signed by %s", sends, testKeyID)
	}
}

// An empty chain is a configuration fault (Auth), found before any
// request is made.
func TestNoCredentialsIsAuth(t *testing.T) {
	isolateAWSEnv(t)
	f := newFakeSES(t)
	cfg := f.config()
	cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
	p := newProvider(t, cfg)
	_, err := p.Send(ctxTimeout(t, 10*time.Second), envelope(), []byte(message))
	want{class: routing.Auth, phase: routing.PhaseAuth, text: "no usable AWS credentials"}.check(t, err)
	if n, _ := f.stats(); n != 0 {
		t.Errorf("SES saw %d requests", n)
	}
}

// isolateAWSEnv keeps the developer's or CI host's AWS setup out of a test.
func isolateAWSEnv(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_DEFAULT_PROFILE": "", "AWS_ROLE_ARN": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
		"AWS_CONFIG_FILE": dir + "/config", "AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials",
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
}
