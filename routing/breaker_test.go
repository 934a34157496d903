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
	if b.Success(now.Add(2 * time.Minute)) {
		t.Fatal("a success during the pull reported a recovery")
	}
	if !b.Pulled(now.Add(3*time.Minute)) || len(b.Failures) != 0 {
		t.Fatalf("Success clears the history, not the pull: %+v", b)
	}
	b.Reset()
	if b.Pulled(now.Add(3*time.Minute)) || b.State(now.Add(3*time.Minute)) != "closed" || len(b.Failures) != 0 || b.Reason != "" {
		t.Fatalf("after Reset: %+v", b)
	}
}

// TestBreakerHalfOpen: once a pull is over the breaker is half-open until
// a success closes it (and says so) or the threshold pulls it again.
func TestBreakerHalfOpen(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var b Breaker
	for i := 0; i < BreakerThreshold; i++ {
		b.Record(Connection, now)
	}
	after := now.Add(PullAfterConnError)
	if b.HalfOpen(now.Add(time.Minute)) || !b.HalfOpen(after) || b.State(after) != "half_open" {
		t.Fatalf("pulled at %v: half-open during the pull or not after it: %+v", now, b)
	}
	for i := 0; i < BreakerThreshold-1; i++ {
		if b.Record(Connection, after.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("probe failure %d pulled the provider", i+1)
		}
	}
	if !b.HalfOpen(after.Add(time.Minute)) {
		t.Fatal("fewer failures than the threshold ended the half-open state")
	}
	if !b.Success(after.Add(time.Minute)) || b.State(after.Add(time.Minute)) != "closed" || b.Success(after.Add(2*time.Minute)) {
		t.Fatalf("a probe's success must close the breaker once: %+v", b)
	}
	for i := 0; i < BreakerThreshold; i++ {
		b.Record(Connection, after.Add(time.Hour))
	}
	again := after.Add(time.Hour + PullAfterConnError)
	for i := 0; i < BreakerThreshold; i++ {
		b.Record(Connection, again)
	}
	if !b.Pulled(again.Add(time.Minute)) {
		t.Fatalf("threshold failures while half-open must pull again: %+v", b)
	}
}
