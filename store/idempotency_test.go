package store

import (
	"sync"
	"testing"
	"time"
)

func TestIdempotencyLifecycle(t *testing.T) {
	s, path := openTest(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const ttl = 24 * time.Hour
	hash := []byte("h1")
	if rec, err := s.BeginIdempotent("key_a", "k", hash, "p1", t0, ttl); rec != nil || err != nil {
		t.Fatalf("first begin: %+v %v", rec, err)
	}
	// While in flight, the owner and others see the in-flight record.
	if rec, _ := s.BeginIdempotent("key_a", "k", hash, "p1", t0, ttl); rec == nil || rec.State != IdemInFlight {
		t.Fatalf("in flight: %+v", rec)
	}
	// Another credential's key of the same name is separate.
	if rec, _ := s.BeginIdempotent("key_b", "k", hash, "p1", t0, ttl); rec != nil {
		t.Fatal("keys leak across credentials")
	}
	if err := s.FinishIdempotent("key_a", "k", "p1", 201, map[string]string{"Location": "/x"}, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec, _ := s.BeginIdempotent("key_a", "k", hash, "p2", t0.Add(ttl-time.Nanosecond), ttl)
	if rec == nil || rec.State != IdemDone || rec.Status != 201 || string(rec.Body) != "sealed" || rec.Header["Location"] != "/x" {
		t.Fatalf("after reopen: %+v", rec)
	}
	// At 24 h the record is gone as far as callers can tell.
	if rec, _ := s.BeginIdempotent("key_a", "k", []byte("h2"), "p2", t0.Add(ttl), ttl); rec != nil {
		t.Fatalf("expired record replayed: %+v", rec)
	}
	// A record left in flight by a dead process is taken over; a
	// released one is gone.
	s.BeginIdempotent("key_a", "orphan", hash, "dead", t0, ttl)
	if rec, _ := s.BeginIdempotent("key_a", "orphan", hash, "p2", t0, ttl); rec != nil {
		t.Fatal("abandoned record not taken over")
	}
	if err := s.ReleaseIdempotent("key_a", "orphan", "p2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IdempotencyRecordOf("key_a", "orphan"); err != ErrNotFound {
		t.Fatalf("released record: %v", err)
	}
}

func TestIdempotencyBeginIsExclusive(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	owners := 0
	for range 20 {
		wg.Go(func() {
			rec, err := s.BeginIdempotent("key_a", "race", []byte("h"), "p", now, time.Hour)
			if err != nil {
				t.Error(err)
			}
			if rec == nil {
				mu.Lock()
				owners++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if owners != 1 {
		t.Fatalf("%d concurrent requests own the key", owners)
	}
}

func TestSweepIdempotency(t *testing.T) {
	s, _ := openTest(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		s.BeginIdempotent("key_a", string(rune('a'+i)), []byte("h"), "p", t0.Add(time.Duration(i)*time.Hour), 24*time.Hour)
	}
	// "a" expires and is claimed again later: its fresh record must stay.
	s.BeginIdempotent("key_a", "a", []byte("h"), "p2", t0.Add(30*time.Hour), 24*time.Hour)
	// Records created at or before the cutoff go: b, c, d (a's first
	// record was replaced, and its index entry with it).
	n, more, err := s.SweepIdempotency(t0.Add(3*time.Hour), 2)
	if err != nil || n != 2 || !more {
		t.Fatalf("first batch: %d %v %v", n, more, err)
	}
	n, more, err = s.SweepIdempotency(t0.Add(3*time.Hour), 2)
	if err != nil || n != 1 || more {
		t.Fatalf("second batch: %d %v %v", n, more, err)
	}
	for key, want := range map[string]bool{"a": true, "b": false, "c": false, "d": false, "e": true} {
		if _, err := s.IdempotencyRecordOf("key_a", key); (err == nil) != want {
			t.Errorf("%s present=%v, want %v", key, err == nil, want)
		}
	}
}
