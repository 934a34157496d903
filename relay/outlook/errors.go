package outlook

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
	"github.com/smtpmux/smtpmux/routing"
)

// graphError is the Microsoft Graph error object. Codes are strings of
// inconsistent case ("ErrorInvalidRecipients", "badRequest"), and the
// specific one may sit in a nested innerError, so all are collected and
// compared case-insensitively:
//
//	{"error":{"code":"ErrorExceededMessageLimit","message":"…",
//	  "innerError":{"request-id":"…","date":"…","client-request-id":"…"}}}
type graphError struct {
	Code       string      `json:"code"`
	Message    string      `json:"message"`
	InnerError *graphError `json:"innerError"`
}

// Codes by meaning, lower-case.
var (
	// The mailbox or the app is over a sending or request limit.
	quotaCodes = map[string]bool{
		"errorexceededmessagelimit": true, "applicationthrottled": true, "mailboxconcurrency": true,
		"toomanyrequests": true, "errorquotaexceeded": true, "errorsubmissionquotaexceeded": true,
		"activitylimitreached": true,
	}
	// The token is not accepted or lacks Mail.Send: connect again.
	reconnectCodes = map[string]bool{
		"invalidauthenticationtoken": true, "erroraccessdenied": true, "accessdenied": true,
		"authorization_requestdenied": true,
	}
	// The mailbox cannot send through Graph at all until someone acts.
	accountCodes = map[string]bool{
		"errorsendasdenied": true, "errormessagesubmissionblocked": true, "mailboxnotenabledforrestapi": true,
		"mailboxnotsupportedforrestapi": true, "errornonexistentmailbox": true, "resourcenotfound": true,
		"errorinvaliduser": true, "erroraccountdisabled": true,
	}
)

// classify maps an error answer of Graph to a failure. Answers about the
// mailbox (401/403/404) or the service (5xx) are never Permanent: every
// message would meet the same answer.
func classify(resp *mailapi.Response) *relay.DeliveryError {
	var env struct {
		Error graphError `json:"error"`
	}
	json.Unmarshal(resp.Body, &env)
	var codes []string
	for e := &env.Error; e != nil && len(codes) < 8; e = e.InnerError {
		if e.Code != "" {
			codes = append(codes, strings.ToLower(e.Code))
		}
	}
	has := func(set map[string]bool) bool {
		for _, c := range codes {
			if set[c] {
				return true
			}
		}
		return false
	}
	detail := mailapi.Snippet(resp.Body)
	if env.Error.Message != "" {
		detail = env.Error.Code + ": " + env.Error.Message
	}
	msg := strings.ToLower(env.Error.Message)
	throttled := strings.Contains(msg, "mailboxconcurrency") || strings.Contains(msg, "throttl") ||
		strings.Contains(msg, "limit exceeded") || strings.Contains(msg, "quota")
	var class routing.Class
	switch st := resp.Status; {
	case st == http.StatusTooManyRequests || has(quotaCodes) || st < 500 && throttled:
		class = routing.Quota
	case st == http.StatusUnauthorized || has(reconnectCodes):
		return mailapi.GrantRevoked(api, "token refused or Mail.Send not granted: "+detail, nil)
	case has(accountCodes) || st == http.StatusForbidden || st == http.StatusNotFound:
		class = routing.Auth
	case st == http.StatusRequestTimeout || st == http.StatusConflict || st >= 500 || st < 400:
		class = routing.Transient
	default:
		// 400 ErrorInvalidRecipients, ErrorMimeContentInvalid…, 413.
		class = routing.Permanent
	}
	return mailapi.Failed(api, class, resp.Status, detail)
}
