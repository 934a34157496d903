package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSESHookPublic: POST /hooks/ses/{id} is served by the binary without
// a Management API key, and a forged SNS post (right shape and topic, a
// signature nobody made, a certificate URL off the SNS host) is refused —
// on the managed account with [managed.ses] sns_topic_arn and on a team's
// own SES provider with ses_sns_topic_arn — as are unknown provider ids,
// other provider types, junk and bodies over the cap. (The signed path is
// tested against a signing peer in relay/bounce.)
func TestSESHookPublic(t *testing.T) {
	const managedTopic = "arn:aws:sns:us-east-1:123456789012:managed-feedback"
	const ownTopic = "arn:aws:sns:eu-west-1:210987654321:own-feedback"
	d := newDaemon(t, map[string]string{"providers": "allow_private_hosts = true\nses_default_credentials = true\n[managed.ses]\nsns_topic_arn = \"" + managedTopic + "\""})
	managed := d.managedID()
	own := d.addProvider(map[string]any{"name": "own", "type": "ses", "ses_region": "eu-west-1",
		"ses_access_key_id": "AKIAEXAMPLEEXAMPLE01", "ses_secret_access_key": "secret", "ses_sns_topic_arn": ownTopic})
	smtpID := d.addProvider(map[string]any{"name": "up", "smtp_host": "127.0.0.1", "smtp_port": 2525, "smtp_protocol": "none"})

	forged := func(topic, certURL string) string {
		b, _ := json.Marshal(map[string]any{"Type": "Notification", "MessageId": "m-" + topic[len(topic)-4:], "TopicArn": topic,
			"Message":   `{"notificationType":"Bounce","mail":{"messageId":"x"},"bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"a@b.test"}]}}`,
			"Timestamp": time.Now().UTC().Format(time.RFC3339), "SignatureVersion": "1", "Signature": "AAAA", "SigningCertURL": certURL})
		return string(b)
	}
	const certOK = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"
	for _, c := range []struct {
		name, id, body string
		want           int
	}{
		{"forged on managed", managed, forged(managedTopic, certOK), 403},
		{"forged on the account-wide id", "managed", forged(managedTopic, certOK), 403},
		{"cert URL at the test process", managed, forged(managedTopic, "https://"+d.httpAddr+"/x.pem"), 403},
		{"managed topic on own provider", own, forged(managedTopic, certOK), 403},
		{"forged on own", own, forged(ownTopic, "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"), 403},
		{"smtp provider", smtpID, forged(managedTopic, certOK), 403},
		{"unknown provider", "dprov_nope", forged(managedTopic, certOK), 403},
		{"junk", managed, "{nope", 400},
		{"huge", managed, `{"Type":"` + strings.Repeat("x", 400<<10) + `"}`, 413},
	} {
		if code, _ := d.apiAsBad("", "POST", "//hooks/ses/"+c.id, c.body); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	if code, _ := d.apiAsBad("", "GET", "//hooks/ses/"+managed, nil); code != 405 {
		t.Errorf("GET: %d, want 405", code)
	}
}
