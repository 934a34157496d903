package routing

import "testing"

// TestClassify covers the rules the real replies (replies_test.go) do not
// show on their own: no reply, and the order of the checks.
func TestClassify(t *testing.T) {
	tests := []struct {
		f    Failure
		want Class
	}{
		{Failure{Phase: PhaseConnect}, Connection},
		{Failure{Phase: PhaseRcpt}, Connection},
		{Failure{Phase: PhaseData}, Connection},
		{Failure{Phase: PhaseFinal}, Uncertain},
		{Failure{Phase: PhaseData, BodySent: true}, Uncertain},
		{Failure{Phase: PhaseConnect, Code: 554, Text: "no service"}, Connection},
		{Failure{Phase: PhaseConnect, Code: 451, Enhanced: "4.7.0", Text: "Daily sending quota exceeded"}, Quota},
		{Failure{Phase: PhaseAuth, Code: 534, Text: "weak"}, Auth},
		// One connection too many is not the account's quota (the SMTP
		// pool learns the limit from a Connection at the opening).
		{Failure{Phase: PhaseConnect, Code: 432, Enhanced: "4.3.2", Text: "Concurrent connections limit exceeded."}, Connection},
		{Failure{Phase: PhaseMail, Code: 421, Enhanced: "4.7.0", Text: "Too many concurrent SMTP connections; limit exceeded"}, Connection},
		{Failure{Phase: PhaseAuth}, Connection},
		{Failure{Phase: PhaseMail, Code: 451, Text: "try later"}, Transient},
		{Failure{Phase: PhaseMail, Code: 550, Enhanced: "5.7.13", Text: "user account disabled"}, Auth},
		{Failure{Phase: PhaseMail, Code: 421, Enhanced: "4.7.0", Text: "Daily sending quota exceeded"}, Quota},
		// Text never decides at RCPT, and never against a recipient code.
		{Failure{Phase: PhaseRcpt, Code: 451, Enhanced: "4.7.1", Text: "sending quota exceeded"}, Transient},
		{Failure{Phase: PhaseRcpt, Code: 421, Enhanced: "4.7.0", Text: "rate limit exceeded"}, Connection},
		{Failure{Phase: PhaseFinal, Code: 452, Enhanced: "4.2.2", Text: "sending quota exceeded"}, Transient},
		{Failure{Phase: PhaseMail, Code: 552, Enhanced: "5.3.4", Text: "daily limit exceeded"}, Permanent},
		{Failure{Phase: PhaseRcpt, Code: 421, Enhanced: "4.2.2", Text: "mailbox full"}, Transient},
		{Failure{Phase: PhaseFinal, Code: 554, Enhanced: "5.0.0", Text: "Sending limit exceeded"}, Quota},
		{Failure{Phase: PhaseFinal, Code: 299}, Transient},
	}
	for _, tc := range tests {
		if got := Classify(tc.f); got != tc.want {
			t.Errorf("Classify(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

// TestDecideAPI: HTTP providers map their error codes to enhanced codes;
// what they leave unmapped is read from the status, then the wording.
func TestDecideAPI(t *testing.T) {
	tests := []struct {
		status   int
		enhanced string
		text     string
		want     Class
		scope    FailureScope
	}{
		{429, "", "", Quota, ScopeProviderQuota},
		{403, "4.4.5", "dailyLimitExceeded", Quota, ScopeProviderQuota},
		{400, "5.7.13", "AccountSuspendedException", Auth, ScopeProviderAuth},
		{400, "5.7.8", "ExpiredToken", Auth, ScopeProviderAuth},
		{401, "", "", Auth, ScopeProviderAuth},
		{403, "", "domainPolicy", Auth, ScopeProviderAuth},
		{404, "", "", Auth, ScopeProviderAuth},
		{400, "5.1.3", "ErrorInvalidRecipients", Permanent, ScopeRecipient},
		{400, "5.7.1", "MailFromDomainNotVerifiedException", Permanent, ScopePolicy},
		{400, "5.6.0", "BadRequestException: Illegal header", Permanent, ScopeMessage},
		{413, "", "", Permanent, ScopeMessage},
		{400, "5.7.1", "MessageRejected: Email address is not verified.", Permanent, ScopePolicy},
		{400, "5.7.1", "MessageRejected: Daily message quota exceeded.", Quota, ScopeProviderQuota},
		{400, "", "invalidArgument: Mail sending limit exceeded", Quota, ScopeProviderQuota},
		{400, "", "SomethingNew", Transient, ScopeUnknown},
		{400, "", "The mailbox is full", Transient, ScopeUnknown},
		{500, "", "InternalFailure", Transient, ScopeProvider},
		{503, "", "Daily limit exceeded", Transient, ScopeProvider},
		{409, "", "ConcurrentModificationException", Transient, ScopeProvider},
	}
	for _, tc := range tests {
		v := Decide(Failure{Phase: PhaseAPI, Code: tc.status, Enhanced: tc.enhanced, Text: tc.text})
		if v.Class != tc.want || v.Scope != tc.scope {
			t.Errorf("HTTP %d %s %q: %+v, want %v/%s", tc.status, tc.enhanced, tc.text, v, tc.want, tc.scope)
		}
	}
}

// FuzzDecide checks the table's promises for any reply: a reply with a
// recipient or message code, or any reply at RCPT other than 421 and
// the account codes, never reaches the breaker; a verdict's scope and
// class agree; unknown is temporary.
func FuzzDecide(f *testing.F) {
	for _, tc := range realReplies {
		f.Add(string(tc.f.Phase), tc.f.Code, tc.f.Enhanced, tc.f.Text)
	}
	f.Fuzz(func(t *testing.T, phase string, code int, enh, text string) {
		fl := Failure{Phase: Phase(phase), Code: code, Enhanced: enh, Text: text}
		v := Decide(fl)
		e := parseEnhanced(enh)
		if v.Class.FeedsBreaker() && (v.Scope == ScopeRecipient || v.Scope == ScopeMessage || v.Scope == ScopePolicy) {
			t.Fatalf("%+v: %+v reaches the breaker", fl, v)
		}
		recipientCode := e.subject == 2 || e.subject == 1 && e.detail != 90 || e.subject == 3 && e.detail == 4
		if code != 0 && fl.Phase != PhaseConnect && fl.Phase != PhaseAuth && fl.Phase != PhaseAPI && recipientCode && !vendorQuota(fl) && v.Class.FeedsBreaker() {
			t.Fatalf("%+v: recipient/message code reaches the breaker (%+v)", fl, v)
		}
		if fl.Phase == PhaseRcpt && code != 0 && code != 421 && v.Class == Quota && !(e.subject == 4 && e.detail == 5) && !(e.subject == 1 && e.detail == 90) {
			t.Fatalf("%+v: quota read from the text at RCPT (%+v)", fl, v)
		}
		if v.Scope == ScopeUnknown && code > 0 && code < 500 && v.Class != Transient {
			t.Fatalf("%+v: unknown temporary reply classed %v", fl, v.Class)
		}
		if v.Class == Permanent && !v.Permanent || v.Class == Transient && v.Permanent {
			t.Fatalf("%+v: class %v disagrees with %+v", fl, v.Class, v)
		}
	})
}
