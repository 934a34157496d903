package routing

import (
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		f    Failure
		want Class
	}{
		{Failure{Phase: PhaseConnect}, Connection},
		{Failure{Phase: PhaseConnect, Code: 421, Text: "busy"}, Connection},
		{Failure{Phase: PhaseConnect, Code: 554, Text: "no service"}, Connection},
		{Failure{Phase: PhaseAuth, Code: 535, Enhanced: "5.7.8", Text: "bad credentials"}, Auth},
		{Failure{Phase: PhaseMail, Code: 530, Text: "auth required"}, Auth},
		{Failure{Phase: PhaseAuth, Code: 534, Text: "weak"}, Auth},
		{Failure{Phase: PhaseAuth, Code: 454, Text: "temporary auth failure"}, Connection},
		{Failure{Phase: PhaseAuth}, Connection},
		{Failure{Phase: PhaseMail, Code: 451, Text: "try later"}, Transient},
		{Failure{Phase: PhaseMail, Code: 421, Enhanced: "4.3.2", Text: "shutting down"}, Connection},
		{Failure{Phase: PhaseFinal, Code: 451, Text: "local error"}, Transient},
		{Failure{Phase: PhaseMail, Code: 421, Enhanced: "4.7.0", Text: "Daily sending quota exceeded"}, Quota},
		{Failure{Phase: PhaseMail, Code: 550, Enhanced: "5.4.5", Text: "Daily user sending limit exceeded"}, Quota},
		{Failure{Phase: PhaseData, Code: 454, Text: "Throttling failure: Maximum sending rate exceeded"}, Quota},
		{Failure{Phase: PhaseRcpt, Code: 550, Enhanced: "5.1.1", Text: "no such user"}, Permanent},
		{Failure{Phase: PhaseFinal, Code: 554, Text: "message rejected"}, Permanent},
		{Failure{Phase: PhaseFinal, Code: 552, Enhanced: "5.3.4", Text: "message size exceeds fixed limit"}, Permanent},
		{Failure{Phase: PhaseFinal, BodySent: true}, Uncertain},
		{Failure{Phase: PhaseFinal}, Uncertain},
		{Failure{Phase: PhaseData}, Connection},
		{Failure{Phase: PhaseRcpt}, Connection},
		{Failure{Phase: PhaseFinal, Code: 299}, Transient},
	}
	for _, tc := range tests {
		if got := Classify(tc.f); got != tc.want {
			t.Errorf("Classify(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestNextRetry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, want := range DefaultRetrySchedule {
		got, ok := NextRetry(DefaultRetrySchedule, i, now)
		if !ok || !got.Equal(now.Add(want)) {
			t.Fatalf("retry %d: %v %v, want %v", i, got, ok, now.Add(want))
		}
	}
	if _, ok := NextRetry(DefaultRetrySchedule, 3, now); ok {
		t.Fatal("schedule of 3 steps must end after 3 retries")
	}
	if _, ok := NextRetry(DefaultRetrySchedule, -1, now); ok {
		t.Fatal("negative retries must not schedule")
	}
}
