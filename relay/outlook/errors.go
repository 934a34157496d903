package outlook

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/relay/oauth/mailapi"
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
	// A recipient address Graph cannot use.
	recipientCodes = map[string]bool{"errorinvalidrecipients": true}
	// The message is over the mailbox's size limit.
	tooBigCodes = map[string]bool{"errormessagesizeexceeded": true}
	// The request built from this message is invalid.
	messageCodes = map[string]bool{"errormimecontentinvalid": true, "errorinvalidproperty": true}
)

// classify maps an error answer of Graph into routing's table: a code
// Graph documents becomes its enhanced code, and the rest is left to the
// table's reading of the HTTP status (and, for an unmapped 4xx, of the
// wording), so answers about the mailbox (401/403/404) or the service
// (5xx) are never taken for a bad message.
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
	enhanced := ""
	switch {
	case has(quotaCodes):
		enhanced = mailapi.EnhancedQuota
	case resp.Status == http.StatusUnauthorized || has(reconnectCodes):
		return mailapi.GrantRevoked(api, "token refused or Mail.Send not granted: "+detail, nil)
	case has(accountCodes):
		enhanced = mailapi.EnhancedAccount
	case has(recipientCodes):
		enhanced = mailapi.EnhancedRecipient
	case has(tooBigCodes):
		enhanced = mailapi.EnhancedTooBig
	case has(messageCodes):
		enhanced = mailapi.EnhancedInvalid
	}
	return mailapi.Failed(api, resp.Status, enhanced, detail)
}
