package routing

import "testing"

func TestBounceOf(t *testing.T) {
	cases := []struct {
		f    Failure
		want BounceKind
	}{
		{Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.1.1", Text: "user unknown"}, BounceHard},
		{Failure{Phase: PhaseRcpt, Code: 550, Text: "no such user"}, BounceHard},
		{Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.2.2", Text: "mailbox full"}, BounceHard},
		{Failure{Phase: PhaseRcpt, Code: 452, Enhanced: "4.2.2", Text: "mailbox over quota"}, BounceSoft},
		{Failure{Phase: PhaseRcpt, Code: 450, Enhanced: "4.1.1", Text: "try later"}, BounceSoft},
		// Not the address's fault: never a bounce.
		{Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.3.4", Text: "message too big"}, BounceNone},
		{Failure{Phase: PhaseFinal, Code: 550, Enhanced: "5.7.1", Text: "spam"}, BounceNone},
		{Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.7.1", Text: "relay denied"}, BounceNone},
		{Failure{Phase: PhaseConnect, Code: 421, Text: "busy"}, BounceNone},
		{Failure{Phase: PhaseData, Code: 0}, BounceNone},
		{Failure{Phase: PhaseAPI, Code: 400, Enhanced: "5.1.1"}, BounceHard},
		// 500-504 without an enhanced code are protocol errors (syntax,
		// command sequence, parameters): the session's trouble, not the
		// address's; suppressing on them would lose good recipients.
		{Failure{Phase: PhaseRcpt, Code: 503, Text: "need MAIL command"}, BounceNone},
		{Failure{Phase: PhaseRcpt, Code: 500, Text: "syntax error"}, BounceNone},
		{Failure{Phase: PhaseRcpt, Code: 501, Text: "bad address syntax"}, BounceNone},
		{Failure{Phase: PhaseRcpt, Code: 504, Text: "parameter not implemented"}, BounceNone},
		// With an enhanced code that names the address, it is one.
		{Failure{Phase: PhaseRcpt, Code: 501, Enhanced: "5.1.3", Text: "bad recipient address syntax"}, BounceHard},
	}
	for _, c := range cases {
		if got := BounceOf(c.f); got != c.want {
			t.Errorf("BounceOf(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
}

func TestBounceOfStatus(t *testing.T) {
	for status, want := range map[string]BounceKind{
		"5.1.1": BounceHard, "5.1.10": BounceHard, "5.2.1": BounceHard, "4.2.2": BounceSoft,
		"5.7.1": BounceNone, "2.0.0": BounceNone, "4.4.7": BounceSoft, "": BounceNone, "x": BounceNone,
		"5.3.4": BounceNone, "5.0.0": BounceHard,
	} {
		if got := BounceOfStatus(status); got != want {
			t.Errorf("BounceOfStatus(%q) = %q, want %q", status, got, want)
		}
	}
}
