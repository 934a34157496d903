package routing

import (
	"strings"
	"testing"
)

// realReplies are upstream replies as Gmail, Microsoft 365/Exchange, SES,
// Postfix and Exim word them, with the phase they answer.
var realReplies = []struct {
	src   string
	f     Failure
	class Class
	scope FailureScope
	perm  bool
	// breaker: whether it counts toward the provider's breaker.
	breaker bool
}{
	// Gmail (smtp.gmail.com, aspmx).
	{"gmail", Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.1.1", Text: "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces."}, Permanent, ScopeRecipient, true, false},
	{"gmail", Failure{Phase: PhaseRcpt, Code: 552, Enhanced: "5.2.2", Text: "The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp"}, Permanent, ScopeRecipient, true, false},
	{"gmail", Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.2.2", Text: "The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm"}, Permanent, ScopeRecipient, true, false},
	{"gmail", Failure{Phase: PhaseRcpt, Code: 450, Enhanced: "4.2.1", Text: "The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time."}, Transient, ScopeRecipient, false, false},
	{"gmail", Failure{Phase: PhaseFinal, Code: 550, Enhanced: "5.7.1", Text: "Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked."}, Permanent, ScopePolicy, true, false},
	{"gmail", Failure{Phase: PhaseConnect, Code: 421, Enhanced: "4.7.0", Text: "Try again later, closing connection. (EHLO)"}, Connection, ScopeProvider, false, true},
	{"gmail", Failure{Phase: PhaseMail, Code: 421, Enhanced: "4.7.0", Text: "TLS required for RCPT domain, closing connection."}, Connection, ScopeProvider, false, true},
	{"gmail", Failure{Phase: PhaseFinal, Code: 421, Enhanced: "4.7.28", Text: "Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited."}, Quota, ScopeProviderQuota, false, true},
	{"gmail", Failure{Phase: PhaseMail, Code: 550, Enhanced: "5.4.5", Text: "Daily user sending quota exceeded."}, Quota, ScopeProviderQuota, true, true},
	{"gmail", Failure{Phase: PhaseMail, Code: 530, Enhanced: "5.7.0", Text: "Authentication Required."}, Auth, ScopeProviderAuth, true, false},
	{"gmail", Failure{Phase: PhaseAuth, Code: 535, Enhanced: "5.7.8", Text: "Username and Password not accepted."}, Auth, ScopeProviderAuth, true, false},
	{"gmail", Failure{Phase: PhaseAuth, Code: 454, Enhanced: "4.7.0", Text: "Too many login attempts, please try again later."}, Connection, ScopeProvider, false, true},
	{"gmail", Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.3.4", Text: "Your message exceeded Google's message size limits."}, Permanent, ScopeMessage, true, false},

	// Microsoft 365 / Exchange.
	{"outlook", Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.4.1", Text: "Recipient address rejected: Access denied. AS(201806281)"}, Permanent, ScopeRecipient, true, false},
	{"outlook", Failure{Phase: PhaseFinal, Code: 554, Enhanced: "5.2.2", Text: "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded"}, Permanent, ScopeRecipient, true, false},
	{"outlook", Failure{Phase: PhaseFinal, Code: 554, Enhanced: "5.2.0", Text: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message."}, Quota, ScopeProviderQuota, true, true},
	{"outlook", Failure{Phase: PhaseFinal, Code: 554, Enhanced: "5.2.2", Text: "mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded"}, Quota, ScopeProviderQuota, true, true},
	{"outlook", Failure{Phase: PhaseFinal, Code: 451, Enhanced: "4.3.2", Text: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a transient exception"}, Quota, ScopeProviderQuota, false, true},
	{"outlook", Failure{Phase: PhaseMail, Code: 432, Enhanced: "4.3.2", Text: "Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information."}, Connection, ScopeProvider, false, true},
	{"outlook", Failure{Phase: PhaseMail, Code: 530, Enhanced: "5.7.57", Text: "Client not authenticated to send mail. [AM0PR01CA0001.eurprd01.prod.exchangelabs.com]"}, Auth, ScopeProviderAuth, true, false},
	{"outlook", Failure{Phase: PhaseAuth, Code: 535, Enhanced: "5.7.139", Text: "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."}, Auth, ScopeProviderAuth, true, false},
	{"outlook", Failure{Phase: PhaseFinal, Code: 550, Enhanced: "5.7.60", Text: "SMTP; Client does not have permissions to send as this sender."}, Permanent, ScopePolicy, true, false},
	{"outlook", Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.1.90", Text: "Your message can't be sent because you've reached your daily limit for message recipients."}, Quota, ScopeProviderQuota, true, true},

	// Amazon SES SMTP interface (no enhanced codes).
	{"ses", Failure{Phase: PhaseData, Code: 454, Text: "Throttling failure: Maximum sending rate exceeded."}, Quota, ScopeProviderQuota, false, true},
	{"ses", Failure{Phase: PhaseMail, Code: 454, Text: "Throttling failure: Daily message quota exceeded."}, Quota, ScopeProviderQuota, false, true},
	{"ses", Failure{Phase: PhaseFinal, Code: 554, Text: "Message rejected: Email address is not verified. The following identities failed the check in region US-EAST-1: app@example.com"}, Permanent, ScopeUnknown, true, false},
	{"ses", Failure{Phase: PhaseAuth, Code: 535, Text: "Authentication Credentials Invalid"}, Auth, ScopeProviderAuth, true, false},
	{"ses", Failure{Phase: PhaseFinal, Code: 554, Text: "Transaction failed: Duplicate header 'Subject'."}, Permanent, ScopeUnknown, true, false},

	// Postfix.
	{"postfix", Failure{Phase: PhaseRcpt, Code: 452, Enhanced: "4.2.2", Text: "<bob@example.org>: Recipient address rejected: mailbox over quota"}, Transient, ScopeRecipient, false, false},
	{"postfix", Failure{Phase: PhaseRcpt, Code: 450, Enhanced: "4.2.0", Text: "<bob@example.org>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html"}, Transient, ScopeRecipient, false, false},
	{"postfix", Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.1.1", Text: "<bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table"}, Permanent, ScopeRecipient, true, false},
	{"postfix", Failure{Phase: PhaseMail, Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage"}, Transient, ScopeProvider, false, false},
	{"postfix", Failure{Phase: PhaseRcpt, Code: 554, Enhanced: "5.7.1", Text: "<bob@example.org>: Relay access denied"}, Permanent, ScopePolicy, true, false},
	{"postfix", Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.3.4", Text: "Message size exceeds fixed limit"}, Permanent, ScopeMessage, true, false},
	{"postfix", Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.3.4", Text: "message size limit exceeded"}, Permanent, ScopeMessage, true, false},
	{"postfix", Failure{Phase: PhaseMail, Code: 553, Enhanced: "5.7.1", Text: "<app@example.com>: Sender address rejected: not owned by user relay@example.com"}, Permanent, ScopePolicy, true, false},
	{"postfix", Failure{Phase: PhaseConnect, Code: 554, Enhanced: "5.7.1", Text: "<unknown[192.0.2.1]>: Client host rejected: Access denied"}, Connection, ScopeProvider, true, true},
	{"postfix", Failure{Phase: PhaseFinal, Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}, Transient, ScopeProvider, false, false},
	{"postfix", Failure{Phase: PhaseRcpt, Code: 450, Enhanced: "4.1.8", Text: "<app@example.com>: Sender address rejected: Domain not found"}, Transient, ScopeMessage, false, false},
	{"postfix", Failure{Phase: PhaseRcpt, Code: 452, Enhanced: "4.5.3", Text: "Error: too many recipients"}, Transient, ScopeRecipient, false, false},
	{"postfix", Failure{Phase: PhaseMail, Code: 421, Enhanced: "4.3.2", Text: "Service shutting down, closing transmission channel"}, Connection, ScopeProvider, false, true},
	{"postfix", Failure{Phase: PhaseMail, Code: 451, Enhanced: "4.7.1", Text: "Daily sending quota exceeded for this account"}, Quota, ScopeProviderQuota, false, true},

	// Exim (no enhanced codes by default).
	{"exim", Failure{Phase: PhaseRcpt, Code: 550, Text: "Unrouteable address"}, Permanent, ScopeRecipient, true, false},
	{"exim", Failure{Phase: PhaseRcpt, Code: 452, Text: "mailbox over quota"}, Transient, ScopeRecipient, false, false},
	{"exim", Failure{Phase: PhaseData, Code: 451, Text: "Temporary local problem - please try later"}, Transient, ScopeUnknown, false, false},
	{"exim", Failure{Phase: PhaseFinal, Code: 552, Text: "Message size exceeds maximum permitted"}, Permanent, ScopeMessage, true, false},
	{"exim", Failure{Phase: PhaseFinal, Code: 550, Text: "Mailbox quota exceeded"}, Permanent, ScopeRecipient, true, false},
	{"exim", Failure{Phase: PhaseMail, Code: 451, Text: "Rate limit exceeded, try again later"}, Quota, ScopeProviderQuota, false, true},
}

func TestRealReplies(t *testing.T) {
	if len(realReplies) < 30 {
		t.Fatalf("only %d real replies", len(realReplies))
	}
	for _, tc := range realReplies {
		v := Decide(tc.f)
		if v.Class != tc.class || v.Scope != tc.scope || v.Permanent != tc.perm {
			t.Errorf("%s %s %d %s %q: got %+v, want class %v scope %s permanent %v",
				tc.src, tc.f.Phase, tc.f.Code, tc.f.Enhanced, tc.f.Text, v, tc.class, tc.scope, tc.perm)
		}
		if v.Class.FeedsBreaker() != tc.breaker {
			t.Errorf("%s %d %s %q: reaches the breaker = %v, want %v", tc.src, tc.f.Code, tc.f.Enhanced, tc.f.Text, v.Class.FeedsBreaker(), tc.breaker)
		}
		if v.Class.FeedsBreaker() && !strings.HasPrefix(string(v.Scope), "provider") && v.Scope != ScopeNetwork {
			t.Errorf("%s %q: scope %s reaches the breaker", tc.src, tc.f.Text, v.Scope)
		}
	}
}
