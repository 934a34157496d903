package main

// Idle mode (-idle): issue 19's "1,000 idle sessions ≤ 20 MB" needs sessions
// that are open, past STARTTLS and AUTH exactly as a sending client leaves
// them, and then do nothing. runIdle opens -c of them (at most idleDialers
// handshakes at a time), prints one JSON line once every attempt has ended,
// holds the sessions, and QUITs them when stdin reaches EOF, on SIGINT or
// SIGTERM, or after -hold; a second JSON line says how many were still open
// then (a session the server closed meanwhile, e.g. after its read_timeout,
// fails its QUIT).
//
// A relay caps connections per client address (smtpmux: 50 by default), so
// -per-ip spreads the sessions over source addresses from -source on
// (127.0.0.2, 127.0.0.3, …: all of 127/8 is loopback on Linux), leaving
// the server's configuration as it is.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// idleDialers bounds the handshakes in flight: a thousand at once would
// measure the listen backlog and time out on a loaded 2-core machine.
const idleDialers = 32

// IdleUp is the line printed once every session has been attempted.
type IdleUp struct {
	Phase      string  `json:"phase"` // "up"
	C          int     `json:"c"`
	Up         int64   `json:"up"`
	Failed     int64   `json:"failed"`
	Sources    int     `json:"sources"`
	PerIP      int     `json:"per_ip"`
	ConnectS   float64 `json:"connect_s"`
	UnixNS     int64   `json:"unix_ns"`
	FirstError string  `json:"first_error,omitempty"`
}

// IdleDone is the line printed after the QUITs.
type IdleDone struct {
	Phase      string  `json:"phase"` // "quit"
	HeldS      float64 `json:"held_s"`
	QuitOK     int64   `json:"quit_ok"`
	QuitFailed int64   `json:"quit_failed"`
	Reason     string  `json:"reason"`
	FirstError string  `json:"first_error,omitempty"`
}

// sourceAddr returns the local address of session i (nil: the system's
// choice).
func sourceAddr(o options, first netip.Addr, i int) net.Addr {
	if o.perIP <= 0 {
		return nil
	}
	a := first
	for k := 0; k < i/o.perIP; k++ {
		a = a.Next()
	}
	return &net.TCPAddr{IP: a.AsSlice()}
}

// runIdle runs idle mode and returns the exit status.
func runIdle(o options) int {
	var first netip.Addr
	if o.perIP > 0 {
		var err error
		if first, err = netip.ParseAddr(o.source); err != nil {
			fmt.Fprintln(os.Stderr, "smtpload: -source:", err)
			return 2
		}
	}
	var (
		clients  = make([]*client, o.c)
		up, bad  atomic.Int64
		errOnce  sync.Once
		firstErr string
	)
	t0 := time.Now()
	eachSession(o.c, func(i int) {
		// A 4 KiB write buffer: an idle session sends commands only.
		c, err := dialFrom(o, sourceAddr(o, first, i), 4096)
		if err != nil {
			bad.Add(1)
			errOnce.Do(func() { firstErr = fmt.Sprintf("session %d: %v", i, err) })
			return
		}
		c.conn.SetDeadline(time.Time{}) // idle for as long as the hold lasts
		clients[i] = c
		up.Add(1)
	})
	sources := 1
	if o.perIP > 0 {
		sources = (o.c + o.perIP - 1) / o.perIP
	}
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(IdleUp{Phase: "up", C: o.c, Up: up.Load(), Failed: bad.Load(), Sources: sources, PerIP: o.perIP,
		ConnectS: time.Since(t0).Seconds(), UnixNS: time.Now().UnixNano(), FirstError: firstErr})

	held := time.Now()
	reason := make(chan string, 3)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		reason <- "stdin closed"
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { reason <- "signal " + (<-sig).String() }()
	if o.hold > 0 {
		time.AfterFunc(o.hold, func() { reason <- "hold elapsed" })
	}
	why := <-reason
	signal.Stop(sig)

	done := IdleDone{Phase: "quit", HeldS: time.Since(held).Seconds(), Reason: why}
	var ok, failed atomic.Int64
	errOnce = sync.Once{}
	eachSession(o.c, func(i int) {
		c := clients[i]
		if c == nil {
			return
		}
		c.conn.SetDeadline(time.Now().Add(c.timeout))
		err := c.cmd(221, "QUIT")
		c.conn.Close()
		if err != nil {
			failed.Add(1)
			errOnce.Do(func() { done.FirstError = fmt.Sprintf("session %d: %v", i, err) })
			return
		}
		ok.Add(1)
	})
	done.QuitOK, done.QuitFailed = ok.Load(), failed.Load()
	enc.Encode(done)
	if up.Load() == 0 {
		return 1
	}
	return 0
}

// eachSession calls fn for every session index below n, from idleDialers
// goroutines at most (the handshakes and QUITs go a few dozen at a time),
// and returns when all are done.
func eachSession(n int, fn func(i int)) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < min(idleDialers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
