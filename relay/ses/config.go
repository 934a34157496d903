// Package ses is the Amazon SES provider: it relays each message, byte for
// byte, with the SES v2 SendEmail API (raw content) through aws-sdk-go-v2,
// for both the managed account (the operator's SES) and a team's own SES
// account.
//
// SES errors are not SMTP replies, so every failure comes back as a
// *relay.DeliveryError whose Class the provider sets itself (quota, auth,
// permanent, transient, connection or uncertain; see errors.go), with the
// HTTP status in Failure.Code and the AWS error code and message in
// Failure.Text.
package ses

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds one Send or Test when Config.Timeout is zero. The
// caller's context deadline, when shorter, wins.
const DefaultTimeout = 60 * time.Second

// Config describes one SES sending account.
type Config struct {
	// Region is the SES region, e.g. "us-east-1". Required: SES identities
	// and quotas are per region, so guessing one would send from an
	// account state the operator did not set up.
	Region string

	// AccessKeyID and SecretAccessKey are static credentials; both or
	// neither. Empty means the AWS default credential chain (environment,
	// shared files, web identity, container or instance role), which is
	// what the managed account on an AWS host normally uses.
	AccessKeyID, SecretAccessKey string

	// Endpoint overrides the SES base URL (http or https), e.g.
	// "http://127.0.0.1:8005" for aws-ses-v2-local. Empty resolves the
	// regional AWS endpoint.
	Endpoint string

	// ConfigurationSet, when set, is sent as ConfigurationSetName so that
	// SES applies its event destinations and IP pool.
	ConfigurationSet string

	// HTTPClient replaces the HTTP client (a test seam). It must be built
	// on net/http's Transport: the provider tells "never sent" from "sent,
	// no reply" through net/http/httptrace. It should not follow
	// redirects. Nil uses a client with the SDK's default transport
	// settings that follows no redirects.
	HTTPClient *http.Client

	// DialControl, when set, becomes the Control function of the dialer
	// of the HTTP client New builds (not of a supplied HTTPClient). cmd
	// sets it for teams' accounts to refuse internal addresses after DNS
	// (internal/netpolicy); a refusal is a configuration fault (class
	// Auth) whose text names no address.
	DialControl func(network, address string, c syscall.RawConn) error

	// Timeout bounds each call (including the SDK's throttling retries);
	// zero means DefaultTimeout.
	Timeout time.Duration
}

// regionRE is the shape of AWS region names: us-east-1, eu-central-2,
// us-gov-west-1, ap-southeast-4, us-iso-east-1.
var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// configSetRE is what SES accepts as a configuration set name.
var configSetRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validate normalises c in place and reports the first problem. Messages
// name the setting but never echo a secret.
func (c *Config) validate() error {
	c.Region = strings.ToLower(strings.TrimSpace(c.Region))
	if c.Region == "" {
		return errors.New("ses: region is required")
	}
	if !regionRE.MatchString(c.Region) {
		return fmt.Errorf("ses: invalid region %q (want a name like us-east-1)", c.Region)
	}
	c.AccessKeyID = strings.TrimSpace(c.AccessKeyID)
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return errors.New("ses: access key id and secret access key must be set together (or both left empty for the AWS default credential chain)")
	}
	if strings.ContainsAny(c.AccessKeyID, " \t\r\n") {
		return errors.New("ses: access key id must not contain whitespace")
	}
	if strings.ContainsAny(c.SecretAccessKey, " \t\r\n") {
		return errors.New("ses: secret access key must not contain whitespace")
	}
	c.Endpoint = strings.TrimSpace(c.Endpoint)
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			return err
		}
		c.Endpoint = strings.TrimRight(c.Endpoint, "/")
	}
	c.ConfigurationSet = strings.TrimSpace(c.ConfigurationSet)
	if c.ConfigurationSet != "" && !configSetRE.MatchString(c.ConfigurationSet) {
		return fmt.Errorf("ses: invalid configuration set name %q (letters, digits, _ and -, at most 64)", c.ConfigurationSet)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("ses: negative timeout %v", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return nil
}

// checkEndpoint accepts an absolute http(s) URL without credentials, query
// or fragment: the SDK appends the API path to it, so anything else would
// silently produce requests to the wrong place.
func checkEndpoint(raw string) error {
	if !strings.Contains(raw, "://") {
		return fmt.Errorf("ses: endpoint %q must be an http or https URL", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("ses: invalid endpoint %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("ses: endpoint %q must be an http or https URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("ses: endpoint %q has no host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("ses: endpoint %q must not contain credentials", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(raw, "?") {
		return fmt.Errorf("ses: endpoint %q must not have a query or fragment", raw)
	}
	return nil
}
