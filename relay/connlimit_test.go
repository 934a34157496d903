package relay

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReserveCountsBeforeTheCheck: 60 attempts reserving at once against
// a limit of 20 get exactly 20 reservations, whatever the interleaving; a
// good attempt's give-back frees its count once, and only in its own
// window.
func TestReserveCountsBeforeTheCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := NewRateLimiter(20, time.Minute, clock)

	var granted sync.WaitGroup
	results := make(chan func(), 60)
	start := make(chan struct{})
	for i := 0; i < 60; i++ {
		granted.Add(1)
		go func() {
			defer granted.Done()
			<-start
			if ok, _, giveBack := r.Reserve("203.0.113.7"); ok {
				results <- giveBack
			}
		}()
	}
	close(start)
	granted.Wait()
	close(results)
	var backs []func()
	for gb := range results {
		backs = append(backs, gb)
	}
	if len(backs) != 20 {
		t.Fatalf("%d of 60 parallel reservations granted, want 20", len(backs))
	}
	ok, wait, _ := r.Reserve("203.0.113.7")
	if ok || wait <= 0 || wait > time.Minute {
		t.Fatalf("21st reservation: ok %v, wait %v; want refused with the rest of the window", ok, wait)
	}
	if ok, _, _ := r.Reserve("203.0.113.8"); !ok {
		t.Fatal("another address was refused")
	}

	// One attempt turned out good: its count comes back, once.
	backs[0]()
	backs[0]()
	if ok, _, _ := r.Reserve("203.0.113.7"); !ok {
		t.Fatal("after a give-back the address is still at the limit")
	}
	if ok, _, _ := r.Reserve("203.0.113.7"); ok {
		t.Fatal("a give-back called twice freed two counts")
	}

	// A give-back after the window ended does not eat into the next one.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	for i := 0; i < 20; i++ {
		if ok, _, _ := r.Reserve("203.0.113.7"); !ok {
			t.Fatalf("new window: reservation %d refused", i)
		}
	}
	backs[1]() // counted in the old window
	if ok, _, _ := r.Reserve("203.0.113.7"); ok {
		t.Fatal("a give-back from the previous window freed a count in this one")
	}
}

// TestCountCommand: every command counts towards the limit except RCPT
// within the recipient cap of an open transaction; progress starts over.
func TestCountCommand(t *testing.T) {
	tests := []struct {
		name    string
		cmds    string // space-separated; "+" is progress (a queued message)
		maxRcpt int
		limit   int
		wantOK  int // commands accepted before the first refusal (-1: none refused)
	}{
		{"noops", "NOOP NOOP NOOP NOOP", 5, 3, 3},
		{"rsets and noops", "RSET NOOP RSET NOOP", 5, 3, 3},
		{"transactions with progress", "MAIL RCPT RCPT DATA + MAIL RCPT DATA + MAIL RCPT DATA +", 5, 2, -1},
		{"a transaction to the recipient cap", "MAIL RCPT RCPT RCPT DATA", 3, 2, -1},
		{"RCPT past the cap counts", "MAIL RCPT RCPT RCPT RCPT RCPT", 3, 2, 5},
		{"RCPT without MAIL counts", "RCPT RCPT RCPT", 5, 2, 2},
		{"RSET ends the free RCPTs", "MAIL RSET RCPT", 5, 2, 2},
		{"transactions without progress", "MAIL RCPT DATA MAIL RCPT DATA", 5, 3, 5},
		{"off", strings.Repeat("NOOP ", 100), 5, 0, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &trackedConn{}
			got := -1
			n := 0
			for _, cmd := range strings.Fields(tc.cmds) {
				if cmd == "+" {
					c.progress(false)
					continue
				}
				if !c.countCommand(cmd, tc.maxRcpt, tc.limit) {
					got = n
					break
				}
				n++
			}
			if got != tc.wantOK {
				t.Fatalf("%q with limit %d: %d accepted before the refusal, want %d", tc.cmds, tc.limit, got, tc.wantOK)
			}
		})
	}
}

// TestClientKey: IPv4 addresses count alone, IPv6 ones by their /64.
