package gmail

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/routing"
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

// quotaWords catch sending-limit answers whose reason is generic, such as
// "Mail sending limit exceeded" or "User-rate limit exceeded".
var quotaWords = []string{"limit exceeded", "rate limit", "quota"}

// classify maps an error answer of the Gmail API to a failure. Unknown
// answers are not guessed into Permanent when they concern the account
// (401/403/404: every message would fail the same) or the service (5xx).
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
	msg := strings.ToLower(e.Error.Message)
	quotaText := false
	for _, w := range quotaWords {
		quotaText = quotaText || strings.Contains(msg, w)
	}
	var class routing.Class
	switch st := resp.Status; {
	case st == http.StatusTooManyRequests || has(quotaReasons) || st < 500 && quotaText:
		class = routing.Quota
	case st == http.StatusUnauthorized || has(scopeReasons):
		return mailapi.GrantRevoked(api, "token refused or gmail.send not granted: "+detail, nil)
	case st == http.StatusForbidden || st == http.StatusNotFound || has(map[string]bool{"failedprecondition": true}):
		// Domain policy, Gmail disabled for the account, a wrong base
		// URL: a fault of the account or its setup.
		class = routing.Auth
	case st == http.StatusRequestTimeout || st == http.StatusConflict || st >= 500 || st < 400:
		class = routing.Transient
	default:
		// 400 (invalid raw message, bad header), 413 (too large).
		class = routing.Permanent
	}
	return mailapi.Failed(api, class, resp.Status, detail)
}
