package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/smtpmux/smtpmux/relay"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestTestFailureDeferred: which failed connection tests keep the
// provider's status ("deferred": the error says Timeout) and which set it
// to error.
func TestTestFailureDeferred(t *testing.T) {
	de := func(phase routing.Phase, code int, enhanced, text string) error {
		return &relay.DeliveryError{Failure: routing.Failure{Phase: phase, Code: code, Enhanced: enhanced, Text: text}}
	}
	for _, tc := range []struct {
		name, typ string
		err       error
		deferred  bool
	}{
		{"deadline", store.TypeSMTP, fmt.Errorf("dial: %w", context.DeadlineExceeded), true},
		{"smtp 421 too many connections", store.TypeSMTP, de(routing.PhaseConnect, 421, "4.7.0", "Too many concurrent SMTP connections"), true},
		{"smtp 454 at AUTH", store.TypeSMTP, de(routing.PhaseAuth, 454, "4.7.0", "Temporary authentication failure"), true},
		{"smtp 535 at AUTH", store.TypeSMTP, de(routing.PhaseAuth, 535, "5.7.8", "Authentication credentials invalid"), false},
		{"smtp 554 at greeting", store.TypeSMTP, de(routing.PhaseConnect, 554, "5.7.1", "Access denied"), false},
		{"smtp 451 daily quota", store.TypeSMTP, de(routing.PhaseConnect, 451, "4.7.0", "Daily sending quota exceeded"), false},
		{"ses 403 bad key", store.TypeSES, de(routing.PhaseAuth, 403, "", "InvalidClientTokenId"), false},
		{"ses 429 throttled", store.TypeSES, de(routing.PhaseConnect, 429, "", "TooManyRequestsException"), false},
		{"refused", store.TypeSMTP, de(routing.PhaseConnect, 0, "", "connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var to interface{ Timeout() bool }
			got := testFailure(tc.err, tc.typ)
			if deferred := errors.As(got, &to) && to.Timeout(); deferred != tc.deferred {
				t.Fatalf("deferred = %v, want %v (%v)", deferred, tc.deferred, got)
			}
		})
	}
}
