package admin

import (
	"errors"

	"github.com/smtpmux/smtpmux/internal/httpapi"
	"github.com/smtpmux/smtpmux/internal/netpolicy"
)

// fcNotAllowed is the field code of a value the operator's policy refuses
// (an internal host, a custom SES endpoint, missing own credentials).
const fcNotAllowed = "not_allowed"

// providerPolicy is what the operator lets teams' providers reach (SPEC
// §10): by default nothing inside the operator's network and nothing
// signed with the operator's AWS credentials.
type providerPolicy struct {
	allowPrivateHosts     bool
	sesDefaultCredentials bool
	// tracking judges the provider's tracking domain; nil when the write
	// involves none.
	tracking *trackingJudge
}

func (s *Server) providerPolicy() providerPolicy {
	return providerPolicy{allowPrivateHosts: s.opts.Providers.AllowPrivateHosts,
		sesDefaultCredentials: s.opts.Providers.SESDefaultCredentials}
}

// hostProblem says why a team may not use host (code "" when it may). It
// is the creation-time half of the rule; the dialer checks again after
// DNS, which catches names that resolve inward.
func (pol providerPolicy) hostProblem(host string) (code, msg string) {
	if pol.allowPrivateHosts {
		return "", ""
	}
	switch err := netpolicy.CheckHost(host); {
	case errors.Is(err, netpolicy.ErrInternalHost):
		return fcNotAllowed, "must not be a loopback, private, link-local or otherwise internal address: this server does not connect into its own network"
	case errors.Is(err, netpolicy.ErrLocalName):
		return fcNotAllowed, "must be a public, fully qualified host name such as smtp.example.com: local and single-label names are refused"
	case err != nil:
		return httpapi.FieldInvalidHost, "must be a host name or an IP address in standard dotted notation"
	}
	return "", ""
}
