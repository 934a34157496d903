package routing

import "strings"

// The wording upstreams use, read only where a reply's code leaves its
// scope open (see Decide). Each list is checked as lower-case substrings.
var (
	// quotaHints: the account, not the message, is over its rate or
	// daily quota ("Daily sending quota exceeded", SES "Throttling
	// failure: Maximum sending rate exceeded", Graph "MailboxConcurrency
	// limit").
	quotaHints = []string{
		"quota", "rate limit", "ratelimit", "rate exceeded", "too many messages",
		"sending limit", "daily limit", "limit exceeded", "throttl", "concurrency limit",
	}
	// connLimitHints: one connection too many for the account (Exchange
	// Online's "432 4.3.2 Concurrent connections limit exceeded"): the
	// service turned a connection away, which the SMTP pool learns from;
	// not a reason to pull the account for a day.
	connLimitHints = []string{"concurrent connections", "too many connections", "too many concurrent"}
	// messageHints: this message's size ("552 Message size exceeds
	// maximum permitted", "message size limit exceeded").
	messageHints = []string{"size", "too big", "too large"}
	// recipientHints: a recipient's address or mailbox, named in a reply
	// outside RCPT that has no enhanced code ("mailbox over quota").
	recipientHints = []string{
		"mailbox", "user unknown", "unknown user", "no such user", "recipient", "does not exist",
		"unrouteable", "unroutable",
	}
	// vendorQuotaTokens are diagnostic tokens (not wording) by which a
	// vendor says the submitting account is over a limit while its code
	// names a mailbox: Exchange Online answers its daily recipient limit
	// with "554 5.2.0 STOREDRV.Submission.Exception:
	// SubmissionQuotaExceededException" and a full sending mailbox with
	// "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:
	// QuotaExceededException…". STOREDRV.Submission is the submitting
	// mailbox's store, never a recipient's.
	vendorQuotaTokens = []string{
		"submissionquotaexceededexception",
		"storedrv.submission.exception:quotaexceededexception",
	}
)

func hintsQuota(text string) bool     { return containsAny(text, quotaHints) }
func hintsConnLimit(text string) bool { return containsAny(text, connLimitHints) }
func hintsMessage(text string) bool   { return containsAny(text, messageHints) }
func hintsRecipient(text string) bool { return containsAny(text, recipientHints) }

// vendorQuota reports a vendor token of the sending account's quota.
func vendorQuota(f Failure) bool { return containsAny(f.Text, vendorQuotaTokens) }

func containsAny(text string, subs []string) bool {
	text = strings.ToLower(text)
	for _, s := range subs {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}
