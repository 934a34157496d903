package netpolicy

import (
	"net/url"
	"regexp"
	"strings"
)

// sesHostRE matches Amazon SES API hosts: email.<region>.amazonaws.com,
// the FIPS variant email-fips.<region>.amazonaws.com, and the China
// partition's .amazonaws.com.cn.
var sesHostRE = regexp.MustCompile(`^email(-fips)?\.[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\.amazonaws\.com(\.cn)?$`)

// AWSSESEndpoint reports whether raw is an Amazon SES endpoint: https, an
// SES host, the default port, no path. It is the only ses_endpoint a team
// may set unless the operator allows private hosts: any other endpoint
// would receive the team's signed requests at a server of its choosing,
// and the test reply would echo what that server says.
func AWSSESEndpoint(raw string) bool {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	if u.Port() != "" && u.Port() != "443" {
		return false
	}
	if u.Path != "" && u.Path != "/" {
		return false
	}
	return sesHostRE.MatchString(strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")))
}
