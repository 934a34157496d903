package relay

import (
	"context"
	"fmt"
	"testing"

	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestTestFailureDeferred: which failed connection tests keep the
// provider's status (deferred) and which set it to error.
func TestTestFailureDeferred(t *testing.T) {
	de := func(phase routing.Phase, code int, enhanced, text string) error {
		return &DeliveryError{Failure: routing.Failure{Phase: phase, Code: code, Enhanced: enhanced, Text: text}}
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
		{"deadline inside a delivery error", store.TypeSMTP,
			&DeliveryError{Failure: routing.Failure{Phase: routing.PhaseConnect}, Err: fmt.Errorf("dial: %w", context.DeadlineExceeded)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := deferred(tc.err, tc.typ); got != tc.deferred {
				t.Fatalf("deferred = %v, want %v (%v)", got, tc.deferred, tc.err)
			}
		})
	}
}

// TestDeferredTestMessage: a deferred test's message is the transport
// class only, whatever made it deferred.
func TestDeferredTestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&DeliveryError{Failure: routing.Failure{Phase: routing.PhaseConnect, Code: 421, Enhanced: "4.7.0", Text: "Too many connections"}}, "connection failed"},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), "connection failed"},
		{fmt.Errorf("tls: handshake: %w", context.DeadlineExceeded), "TLS handshake failed"},
	} {
		if !deferred(tc.err, store.TypeSMTP) {
			t.Fatalf("%v is not deferred", tc.err)
		}
		if got := deferredMessage(tc.err); got != tc.want {
			t.Fatalf("deferredMessage(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
