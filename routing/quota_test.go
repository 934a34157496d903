package routing

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func lim(n int) *Limit { return &Limit{n, n} }

func TestPerSecondSliding(t *testing.T) {
	var u Usage
	l := Limits{Second: lim(5)}
	now := t0
	for i := 0; i < 5; i++ {
		if ok, _ := u.Check("p", l, 1, now); !ok {
			t.Fatalf("send %d refused", i)
		}
		u.Reserve(1, now)
	}
	if ok, _ := u.Check("p", l, 1, now); ok {
		t.Fatal("6th in-flight send allowed")
	}
	// Completions at t0+200ms hold the window until t0+1.2s.
	done := t0.Add(200 * time.Millisecond)
	for i := 0; i < 5; i++ {
		u.Complete(1, now, true, done)
	}
	ok, retry := u.Check("p", l, 1, t0.Add(time.Second))
	if ok || !retry.Equal(done.Add(time.Second)) {
		t.Fatalf("at t0+1s: ok=%v retry=%v, want refused until %v", ok, retry, done.Add(time.Second))
	}
	if ok, _ := u.Check("p", l, 1, done.Add(time.Second+time.Millisecond)); !ok {
		t.Fatal("window did not slide")
	}
}

func TestReleaseReturnsCapacity(t *testing.T) {
	var u Usage
	l := Limits{Day: lim(2)}
	u.Reserve(1, t0)
	u.Reserve(1, t0)
	if ok, retry := u.Check("p", l, 1, t0); ok || !retry.Equal(t0.Truncate(24*time.Hour).AddDate(0, 0, 1)) {
		t.Fatalf("over daily cap: ok=%v retry=%v", ok, retry)
	}
	u.Complete(1, t0, false, t0.Add(time.Second)) // not consumed
	if ok, _ := u.Check("p", l, 1, t0.Add(time.Second)); !ok {
		t.Fatal("released unit not returned")
	}
	u.Complete(1, t0, true, t0.Add(time.Second))
	// The next UTC day starts empty.
	if ok, _ := u.Check("p", l, 2, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)); !ok {
		t.Fatal("new UTC day not empty")
	}
}

func TestReleaseAfterWindowRolledDoesNotUnderflow(t *testing.T) {
	var u Usage
	u.Reserve(1, t0.Add(-time.Minute))
	u.Complete(1, t0.Add(-time.Minute), false, t0)
	for w := Minute; w < numWindows; w++ {
		if u.Count[w] < 0 {
			t.Fatalf("window %v count %d", w, u.Count[w])
		}
	}
}

func TestOversizeFitsEmptyWindow(t *testing.T) {
	var u Usage
	l := Limits{Hour: lim(2)}
	if ok, _ := u.Check("p", l, 10, t0); !ok {
		t.Fatal("a 10-recipient message must fit an empty hour capped at 2")
	}
	u.Reserve(10, t0)
	if ok, _ := u.Check("p", l, 1, t0); ok {
		t.Fatal("nothing more fits this hour")
	}
}

func TestRangeLimitHeldForTheHour(t *testing.T) {
	l := Limit{10, 20}
	seen := map[int]bool{}
	for h := 0; h < 200; h++ {
		at := t0.Add(time.Duration(h) * time.Hour)
		v := l.Effective("p", at)
		if v < 10 || v > 20 {
			t.Fatalf("drawn %d outside [10,20]", v)
		}
		if l.Effective("p", at.Add(59*time.Minute)) != v {
			t.Fatal("value changed within the hour")
		}
		seen[v] = true
	}
	if len(seen) < 5 {
		t.Fatalf("range draws too few distinct values: %v", seen)
	}
}

func TestBreaker(t *testing.T) {
	var b Breaker
	now := t0
	if b.Record(Transient, now) || b.Record(Permanent, now) {
		t.Fatal("transient/permanent failures must not count")
	}
	b.Record(Connection, now)
	b.Record(Connection, now.Add(time.Minute))
	b.Success(now.Add(time.Minute))
	b.Record(Connection, now.Add(2*time.Minute))
	if b.Record(Connection, now.Add(3*time.Minute)) {
		t.Fatal("success must clear the history")
	}
	// Failures older than 5 minutes fall out of the span.
	if b.Record(Connection, now.Add(9*time.Minute)) {
		t.Fatal("failure outside the 5-minute span counted")
	}
	if b.Record(Connection, now.Add(10*time.Minute)) {
		t.Fatal("second failure must not pull")
	}
	if !b.Record(Connection, now.Add(11*time.Minute)) {
		t.Fatal("third failure within 5 minutes must pull")
	}
	at := now.Add(11 * time.Minute)
	if !b.Pulled(at.Add(59*time.Minute)) || b.Pulled(at.Add(time.Hour)) {
		t.Fatal("connection pull lasts exactly 1 h")
	}
	var q Breaker
	q.Record(Quota, now)
	q.Record(Connection, now)
	q.Record(Quota, now)
	if !q.Pulled(now.Add(23*time.Hour)) || q.Pulled(now.Add(24*time.Hour)) || q.Reason != "quota_block" {
		t.Fatalf("quota pull lasts 24 h: %+v", q)
	}
}
