package admin

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/netpolicy"
	"github.com/smtpmux/smtpmux/store"
)

// sesInput is the own-SES part of a provider body (type "ses").
type sesInput struct {
	region, keyID, secret, endpoint, configSet, topic httpapi.Opt[string]
}

func (s *sesInput) fields() []struct {
	name string
	dst  *httpapi.Opt[string]
} {
	return []struct {
		name string
		dst  *httpapi.Opt[string]
	}{
		{"ses_region", &s.region}, {"ses_access_key_id", &s.keyID}, {"ses_secret_access_key", &s.secret},
		{"ses_endpoint", &s.endpoint}, {"ses_configuration_set", &s.configSet},
		{"ses_sns_topic_arn", &s.topic},
	}
}

var (
	sesRegionRe    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d{1,2}$`)
	sesKeyIDRe     = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
	sesConfigSetRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// snsTopicRe is relay/bounce's topic ARN shape (admin does not
	// import relay); group 1 is the region.
	snsTopicRe = regexp.MustCompile(`^arn:aws(?:-cn|-us-gov)?:sns:([a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}):[0-9]{12}:[A-Za-z0-9_.-]{1,256}$`)
)

// applySES validates and applies the SES fields. They belong to type ses
// only; on other types they are an error rather than silently ignored.
func applySES(in *providerInput, p *store.Provider, v *httpapi.Validator, sealedSecret []byte, pol providerPolicy) {
	s := in.ses
	if p.Type != store.TypeSES {
		for _, f := range s.fields() {
			if f.dst.Set {
				v.Add(f.name, httpapi.FieldNotSupported, f.name+" applies to type \"ses\" only")
			}
		}
		return
	}
	str := func(o httpapi.Opt[string]) string {
		if o.Null {
			return ""
		}
		return strings.TrimSpace(o.V)
	}
	if s.region.Set {
		p.SESRegion = strings.ToLower(str(s.region))
	}
	switch {
	case p.SESRegion == "":
		v.Add("ses_region", httpapi.FieldRequired, "ses_region is required (e.g. us-east-1)")
	case !sesRegionRe.MatchString(p.SESRegion):
		v.Add("ses_region", httpapi.FieldInvalid, "ses_region must be an AWS region such as us-east-1")
	}
	if s.keyID.Set {
		p.SESAccessKeyID = str(s.keyID)
		if p.SESAccessKeyID != "" && !sesKeyIDRe.MatchString(p.SESAccessKeyID) {
			v.Add("ses_access_key_id", httpapi.FieldInvalid, "ses_access_key_id must be an AWS access key ID (upper-case letters and digits)")
		}
	}
	if s.secret.Set {
		switch {
		case s.secret.Null:
			p.SESSecretSealed = nil
		case s.secret.V == "": // blank keeps the stored one, as for smtp_password
		case len(s.secret.V) > 256 || strings.ContainsAny(s.secret.V, "\x00\r\n "):
			v.Add("ses_secret_access_key", httpapi.FieldInvalid, "ses_secret_access_key must be at most 256 characters without spaces or control characters")
		default:
			p.SESSecretSealed = sealedSecret
		}
	}
	keyless := p.SESAccessKeyID == "" && len(p.SESSecretSealed) == 0
	switch {
	case v.Has("ses_access_key_id") || v.Has("ses_secret_access_key"):
	case keyless && !pol.sesDefaultCredentials:
		// Without keys the SDK would sign with the daemon's own AWS
		// credentials: the operator's account, outside managed limits.
		v.Add("ses_access_key_id", httpapi.FieldRequired, "ses_access_key_id and ses_secret_access_key are required: a team's SES provider signs with its own AWS credentials")
	case (p.SESAccessKeyID == "") != (len(p.SESSecretSealed) == 0):
		v.Add("ses_secret_access_key", httpapi.FieldRequired, "ses_access_key_id and ses_secret_access_key go together")
	}
	if s.endpoint.Set {
		p.SESEndpoint = str(s.endpoint)
	}
	// Judged on every write, not only when the field is sent, so that an
	// endpoint stored before the policy cannot ride along on an edit.
	if p.SESEndpoint != "" {
		u, err := url.Parse(p.SESEndpoint)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
			v.Add("ses_endpoint", httpapi.FieldInvalid, "ses_endpoint must be an http(s) base URL such as https://email.us-east-1.amazonaws.com")
		case !pol.allowPrivateHosts && !netpolicy.AWSSESEndpoint(p.SESEndpoint):
			v.Add("ses_endpoint", fcNotAllowed, "ses_endpoint must be an Amazon SES endpoint (https://email.<region>.amazonaws.com or its email-fips variant), or be left empty for the region's default")
		}
	}
	if s.configSet.Set {
		p.SESConfigurationSet = str(s.configSet)
		if p.SESConfigurationSet != "" && !sesConfigSetRe.MatchString(p.SESConfigurationSet) {
			v.Add("ses_configuration_set", httpapi.FieldInvalid, "ses_configuration_set must be 1–64 letters, digits, _ or -")
		}
	}
	if s.topic.Set {
		// The SNS topic POST /hooks/ses/{id} accepts this account's SES
		// notifications from; its region must be the account's, where
		// SES publishes them.
		p.SNSTopicARN = str(s.topic)
		if m := snsTopicRe.FindStringSubmatch(p.SNSTopicARN); p.SNSTopicARN != "" && (m == nil || m[1] != p.SESRegion) {
			v.Add("ses_sns_topic_arn", httpapi.FieldInvalid, "ses_sns_topic_arn must be an SNS topic ARN of the provider's region, such as arn:aws:sns:us-east-1:123456789012:ses-feedback")
		}
	}
}
