package ses

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/routing"
)

func TestNewValidation(t *testing.T) {
	ok := Config{Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG"}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		err    string // "" = valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"region case and spaces", func(c *Config) { c.Region = " US-EAST-1 " }, ""},
		{"gov region", func(c *Config) { c.Region = "us-gov-west-1" }, ""},
		{"endpoint http", func(c *Config) { c.Endpoint = "http://127.0.0.1:8005" }, ""},
		{"endpoint https with path", func(c *Config) { c.Endpoint = "https://ses.internal/proxy/" }, ""},
		{"configuration set", func(c *Config) { c.ConfigurationSet = "tx_mail-1" }, ""},
		{"no region", func(c *Config) { c.Region = "" }, "region is required"},
		{"region without number", func(c *Config) { c.Region = "us-east" }, "invalid region"},
		{"region is a url", func(c *Config) { c.Region = "email.us-east-1.amazonaws.com" }, "invalid region"},
		{"key without secret", func(c *Config) { c.SecretAccessKey = "" }, "set together"},
		{"secret without key", func(c *Config) { c.AccessKeyID = "" }, "set together"},
		{"newline in secret", func(c *Config) { c.SecretAccessKey = "a\nb" }, "secret access key must not contain whitespace"},
		{"space in key", func(c *Config) { c.AccessKeyID = "AKID EXAMPLE" }, "access key id must not contain whitespace"},
		{"endpoint without scheme", func(c *Config) { c.Endpoint = "127.0.0.1:8005" }, "http or https"},
		{"endpoint ftp", func(c *Config) { c.Endpoint = "ftp://example.com" }, "http or https"},
		{"endpoint without host", func(c *Config) { c.Endpoint = "http:///v2" }, "no host"},
		{"endpoint with credentials", func(c *Config) { c.Endpoint = "http://u:p@example.com" }, "credentials"},
		{"endpoint with query", func(c *Config) { c.Endpoint = "http://example.com/?x=1" }, "query"},
		{"bad configuration set", func(c *Config) { c.ConfigurationSet = "has space" }, "configuration set"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "negative timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			p, err := New(context.Background(), cfg)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("New: %v, want error containing %q", err, tc.err)
			}
			if err == nil {
				p.Close()
			}
			if err != nil && strings.Contains(err.Error(), cfg.SecretAccessKey) && cfg.SecretAccessKey != "" {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	p := newProvider(t, Config{Region: " EU-CENTRAL-1", AccessKeyID: " AKID ", SecretAccessKey: "s",
		Endpoint: "http://127.0.0.1:8005/"})
	c := p.Config()
	if c.Region != "eu-central-1" || c.AccessKeyID != "AKID" || c.Timeout != DefaultTimeout ||
		c.Endpoint != "http://127.0.0.1:8005" {
		t.Errorf("normalised config = %+v", c)
	}
}

func TestClassifyAPI(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code, msg string
		want      routing.Class
	}{
		{429, "TooManyRequestsException", "Maximum sending rate exceeded.", routing.Quota},
		{400, "Throttling", "Daily message quota exceeded.", routing.Quota},
		{400, "MessageRejected", "Daily message quota exceeded.", routing.Quota}, // unmapped: the wording decides
		{429, "UnknownError", "", routing.Quota},
		{400, "LimitExceededException", "", routing.Quota},
		{400, "SendingPausedException", "", routing.Quota},
		{403, "InvalidClientTokenId", "", routing.Auth},
		{403, "SignatureDoesNotMatch", "", routing.Auth},
		{400, "ExpiredToken", "", routing.Auth},
		{400, "NotAuthorizedException", "", routing.Auth},
		{401, "UnknownError", "", routing.Auth},
		{403, "", "", routing.Auth},
		{400, "AccountSuspendedException", "", routing.Auth},
		{400, "MessageRejected", "Email address is not verified.", routing.Permanent},
		{400, "MailFromDomainNotVerifiedException", "", routing.Permanent},
		{400, "BadRequestException", "", routing.Permanent},
		{500, "InternalFailure", "", routing.Transient},
		{503, "ServiceUnavailable", "", routing.Transient},
		{400, "SomethingNew", "", routing.Transient},
	} {
		if got := routing.Classify(apiFailure(tc.status, tc.code, tc.msg)); got != tc.want {
			t.Errorf("apiFailure(%d, %q, %q) classifies as %v, want %v", tc.status, tc.code, tc.msg, got, tc.want)
		}
	}
}

func TestAPIText(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code, msg string
		want      string
	}{
		{400, "MessageRejected", "Email address is not verified.", "MessageRejected: Email address is not verified."},
		{500, "InternalFailure", "", "InternalFailure"},
		{502, "UnknownError", "UnknownError", "HTTP 502 from SES"},
		{502, "", "", "HTTP 502 from SES"},
	} {
		if got := apiText(tc.status, tc.code, tc.msg); got != tc.want {
			t.Errorf("apiText(%d, %q, %q) = %q, want %q", tc.status, tc.code, tc.msg, got, tc.want)
		}
	}
}
