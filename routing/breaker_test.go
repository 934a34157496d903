package routing

import (
	"testing"
	"time"
)

// TestBreakerResetEndsPull: a delivery success clears the failure history
// only; Reset (a successful connection test) also ends a pull at once.
func TestBreakerResetEndsPull(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b Breaker
	for i := 0; i < BreakerThreshold; i++ {
		b.Record(Connection, now.Add(time.Duration(i)*time.Second))
	}
	if !b.Pulled(now.Add(time.Minute)) || b.Reason != "connection_failures" {
		t.Fatalf("after %d connection failures: %+v", BreakerThreshold, b)
	}
	b.Record(Connection, now.Add(2*time.Minute))
	b.Success()
	if !b.Pulled(now.Add(3*time.Minute)) || len(b.Failures) != 0 {
		t.Fatalf("Success clears the history, not the pull: %+v", b)
	}
	b.Reset()
	if b.Pulled(now.Add(3*time.Minute)) || b.State(now.Add(3*time.Minute)) != "closed" || len(b.Failures) != 0 || b.Reason != "" {
		t.Fatalf("after Reset: %+v", b)
	}
}
