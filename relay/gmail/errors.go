package gmail

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
)

// apiError is the Google API error object:
//
//	{"error":{"code":403,"message":"…","status":"PERMISSION_DENIED",
//	  "errors":[{"domain":"usageLimits","reason":"dailyLimitExceeded","message":"…"}],
//	  "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"…"}]}}
type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Errors  []struct {
			Domain  string `json:"domain"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"errors"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	} `json:"error"`
}

// quotaReasons say the account or the project is over a rate or daily
// limit (Gmail "Resolve errors": 403 dailyLimitExceeded,
// userRateLimitExceeded, rateLimitExceeded; 429 rateLimitExceeded).
var quotaReasons = map[string]bool{
	"dailylimitexceeded": true, "userratelimitexceeded": true, "ratelimitexceeded": true,
	"quotaexceeded": true, "rate_limit_exceeded": true, "resource_exhausted": true,
}

// scopeReasons say the token lacks the gmail.send permission: the grant
// must be made again.
var scopeReasons = map[string]bool{
	"insufficientpermissions": true, "access_token_scope_insufficient": true,
}

// messageReasons say the request built from this message is invalid
// (400 invalidArgument: a bad raw message or header).
var messageReasons = map[string]bool{"invalidargument": true, "invalid": true, "badrequest": true}

// accountReasons say Gmail cannot send for this account (the service is
// not enabled for it): a fault of the account's set-up.
var accountReasons = map[string]bool{"failedprecondition": true}

// classify maps an error answer of the Gmail API into routing's table: a
// reason Gmail documents becomes its enhanced code, and the rest is left
// to the table's reading of the HTTP status (and, for an unmapped 4xx, of
// the wording), so account answers (401/403/404) and service answers
// (5xx) are never taken for a bad message.
func classify(resp *mailapi.Response) *relay.DeliveryError {
	var e apiError
	json.Unmarshal(resp.Body, &e)
	var reasons []string
	for _, x := range e.Error.Errors {
		reasons = append(reasons, x.Reason)
	}
	for _, x := range e.Error.Details {
		reasons = append(reasons, x.Reason)
	}
	has := func(set map[string]bool) bool {
		for _, r := range reasons {
			if set[strings.ToLower(r)] {
				return true
			}
		}
		return false
	}
	detail := mailapi.Snippet(resp.Body)
	if e.Error.Message != "" {
		detail = e.Error.Message
		if len(reasons) > 0 && reasons[0] != "" {
			detail = reasons[0] + ": " + detail
		}
	}
	enhanced := ""
	switch {
	case has(quotaReasons):
		enhanced = mailapi.EnhancedQuota
	case resp.Status == http.StatusUnauthorized || has(scopeReasons):
		return mailapi.GrantRevoked(api, "token refused or gmail.send not granted: "+detail, nil)
	case has(accountReasons):
		enhanced = mailapi.EnhancedAccount
	case has(messageReasons):
		enhanced = mailapi.EnhancedInvalid
	}
	return mailapi.Failed(api, resp.Status, enhanced, detail)
}
