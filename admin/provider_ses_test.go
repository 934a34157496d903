package admin

import (
	"strings"
	"testing"
)

func TestCreateSESProvider(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"name": "own ses", "type": "ses", "ses_region": "eu-west-1",
		"ses_access_key_id": "AKIAEXAMPLEEXAMPLE01", "ses_secret_access_key": "very/secret+key",
		"ses_endpoint": "https://email.eu-west-1.amazonaws.com", "ses_configuration_set": "tracking-1"}
	r := e.do("POST", "/api/v1/providers", body)
	if r.Code != 201 {
		t.Fatalf("create: %d %s", r.Code, r.Body)
	}
	if r.str("data.type") != "ses" || r.str("data.ses_region") != "eu-west-1" || r.str("data.ses_access_key_id") != "AKIAEXAMPLEEXAMPLE01" ||
		!(r.get("data.has_ses_secret_access_key") == true) || strings.Contains(r.Body, "very/secret+key") {
		t.Fatalf("created: %s", r.Body)
	}
	for _, tc := range []struct {
		name  string
		patch map[string]any
		field string
	}{
		{"bad region", map[string]any{"ses_region": "mars"}, "ses_region"},
		{"bad endpoint", map[string]any{"ses_endpoint": "ftp://x"}, "ses_endpoint"},
		{"bad key id", map[string]any{"ses_access_key_id": "lower case"}, "ses_access_key_id"},
		{"key id without secret", map[string]any{"ses_secret_access_key": nil}, "ses_secret_access_key"},
		{"bad config set", map[string]any{"ses_configuration_set": "a b"}, "ses_configuration_set"},
		{"topic not an ARN", map[string]any{"ses_sns_topic_arn": "https://sns.eu-west-1.amazonaws.com/"}, "ses_sns_topic_arn"},
		{"topic of another region", map[string]any{"ses_sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:t"}, "ses_sns_topic_arn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("PATCH", "/api/v1/providers/"+r.str("data.id"), tc.patch)
			expectErr(t, r, 422, "validation_error", tc.field)
		})
	}
	// The SNS topic of the hook (POST /hooks/ses/{id}) is stored and shown.
	rt := e.do("PATCH", "/api/v1/providers/"+r.str("data.id"), map[string]any{"ses_sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback"})
	if rt.Code != 200 || rt.str("data.ses_sns_topic_arn") != "arn:aws:sns:eu-west-1:123456789012:ses-feedback" {
		t.Fatalf("topic: %d %s", rt.Code, rt.Body)
	}
	// Blank secret keeps the stored one.
	r2 := e.do("PATCH", "/api/v1/providers/"+r.str("data.id"), map[string]any{"ses_secret_access_key": "", "ses_region": "us-east-2", "ses_sns_topic_arn": nil})
	if r2.Code != 200 || !(r2.get("data.has_ses_secret_access_key") == true) || r2.str("data.ses_region") != "us-east-2" {
		t.Fatalf("patch: %d %s", r2.Code, r2.Body)
	}
}
