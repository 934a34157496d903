// Command smtpload is the load driver of the smtpmux benchmark: it sends -n
// messages of -size bytes over -c concurrent SMTP sessions, each session
// reusing its connection for many messages, optionally with STARTTLS and
// AUTH PLAIN (see client.go for why it does not use go-smtp's client). Every message carries a unique Message-ID and a checksum
// trailer (see package benchmsg) that the sink verifies.
//
// It records each message's acceptance latency, from sending DATA to reading
// the final 250 reply (so the body transfer is included), and prints one JSON
// line:
//
//	{"sent":…,"failed":…,"accepted_per_s":…,"p50_ms":…,"p99_ms":…,"elapsed_s":…,…}
//
// The clock starts once every session is connected (and authenticated);
// start_unix_ns lets a caller compute end-to-end figures against the sink.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smtpmux/smtpmux/bench/internal/benchmsg"
)

// options are the command-line flags.
type options struct {
	addr, from, to, user, pass, run string
	n, size, c                      int
	startTLS, insecure              bool
	timeout                         time.Duration
	// interval, when set, splits the run into windows of that length
	// reported one by one (windows.go).
	interval time.Duration
	// rate, when set, paces the run open-loop (pace.go): message seq is
	// due at seq/rate seconds in, and its latency counts from then.
	rate float64
	// idle mode (idle.go): -c sessions held open, perIP of them per
	// source address from source on.
	idle   bool
	hold   time.Duration
	perIP  int
	source string
}

// Result is the JSON line printed at the end.
type Result struct {
	Sent         int64   `json:"sent"`
	Failed       int64   `json:"failed"`
	AcceptedPerS float64 `json:"accepted_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	ElapsedS     float64 `json:"elapsed_s"`
	CPUs         float64 `json:"cpu_s"` // driver CPU time (user+system) during the run
	StartNS      int64   `json:"start_unix_ns"`
	EndNS        int64   `json:"end_unix_ns"`
	N            int     `json:"n"`
	Size         int     `json:"size"`
	C            int     `json:"c"`
	Run          string  `json:"run"`
	FirstError   string  `json:"first_error,omitempty"`
	// Windows: with -interval, the acceptances of each window of the run.
	Windows []Window `json:"windows,omitempty"`
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:2525", "SMTP server address")
	flag.IntVar(&o.n, "n", 10000, "number of messages")
	flag.IntVar(&o.size, "size", 2048, "message size in bytes")
	flag.IntVar(&o.c, "c", 20, "concurrent sessions")
	flag.BoolVar(&o.startTLS, "starttls", false, "issue STARTTLS before sending")
	flag.StringVar(&o.user, "auth-user", "", "AUTH PLAIN username (AUTH is used when -auth-pass is set)")
	flag.StringVar(&o.pass, "auth-pass", "", "AUTH PLAIN password")
	flag.BoolVar(&o.insecure, "insecure", false, "do not verify the server certificate")
	flag.StringVar(&o.from, "from", "bench@client.example", "envelope and header sender")
	flag.StringVar(&o.to, "to", "rcpt@sink.example", "envelope and header recipient")
	flag.StringVar(&o.run, "run", "", "run identifier in Message-IDs (default: random)")
	flag.DurationVar(&o.timeout, "timeout", time.Minute, "per-command timeout")
	flag.DurationVar(&o.interval, "interval", 0, "also report each window of this length (accepted, rate, p50, p99 of the messages whose 250 came in it)")
	flag.BoolVar(&o.idle, "idle", false, "idle mode: open -c sessions, print one JSON line, hold them until stdin closes, a signal or -hold, then QUIT (see idle.go)")
	flag.DurationVar(&o.hold, "hold", 0, "idle mode: the longest hold (0: until stdin closes or SIGINT/SIGTERM)")
	flag.IntVar(&o.perIP, "per-ip", 0, "idle mode: sessions per source address, spread over -source, the next address, … (0: all from the system's choice)")
	flag.StringVar(&o.source, "source", "127.0.0.2", "idle mode: the first source address when -per-ip is set")
	flag.Float64Var(&o.rate, "rate", 0, "offered load in messages per second over all sessions (0: as fast as the server answers); a message's latency counts from its due time (pace.go)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the driver to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "smtpload:", err)
			os.Exit(2)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if o.run == "" {
		b := make([]byte, 6)
		rand.Read(b)
		o.run = hex.EncodeToString(b)
	}
	if o.c < 1 || o.n < 1 || !(o.rate >= 0) || math.IsInf(o.rate, 1) {
		fmt.Fprintln(os.Stderr, "smtpload: -n and -c must be positive, -rate a number ≥ 0")
		os.Exit(2)
	}
	if o.idle {
		os.Exit(runIdle(o))
	}
	res := run(o)
	json.NewEncoder(os.Stdout).Encode(res)
	if res.Sent == 0 {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// run drives the load and gathers the result.
func run(o options) Result {
	var (
		next, failed atomic.Int64
		connected    atomic.Int64
		firstErr     sync.Once
		errText      string
		wg           sync.WaitGroup
		ready        sync.WaitGroup
		start        = make(chan struct{})
		lats         = make([][]time.Duration, o.c)
		ends         = make([][]time.Duration, o.c) // each 250's time since t0
		t0           time.Time
	)
	noteErr := func(err error) {
		failed.Add(1)
		firstErr.Do(func() { errText = err.Error() })
	}
	ready.Add(o.c)
	for w := 0; w < o.c; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := &sender{o: o, b: &benchmsg.Builder{Run: o.run, From: o.from, To: o.to, Size: o.size}}
			if err := s.connect(); err != nil {
				firstErr.Do(func() { errText = err.Error() })
			} else {
				connected.Add(1)
			}
			ready.Done()
			<-start
			if connected.Load() == 0 {
				return // nobody could connect: fail fast instead of retrying n times
			}
			lats[w] = make([]time.Duration, 0, o.n/o.c+1)
			if o.interval > 0 {
				ends[w] = make([]time.Duration, 0, o.n/o.c+1)
			}
			for {
				seq := next.Add(1)
				if seq > int64(o.n) {
					break
				}
				late := pace(o.rate, t0, seq)
				d, err := s.send(int(seq))
				if err != nil {
					noteErr(err)
					continue
				}
				d += late
				lats[w] = append(lats[w], d)
				if o.interval > 0 {
					ends[w] = append(ends[w], time.Since(t0))
				}
			}
			s.quit()
		}(w)
	}
	ready.Wait()
	cpu0 := cpuTime()
	t0 = time.Now()
	close(start)
	wg.Wait()
	t1 := time.Now()
	cpu := cpuTime() - cpu0

	if connected.Load() == 0 {
		failed.Store(int64(o.n))
	}
	var windows []Window
	if o.interval > 0 {
		windows = splitWindows(o.interval, lats, ends)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	r := Result{
		Sent: int64(len(all)), Failed: failed.Load(), N: o.n, Size: o.size, C: o.c, Run: o.run,
		ElapsedS: t1.Sub(t0).Seconds(), CPUs: cpu.Seconds(), StartNS: t0.UnixNano(), EndNS: t1.UnixNano(), FirstError: errText,
		Windows: windows,
	}
	r.AcceptedPerS = float64(r.Sent) / r.ElapsedS
	if len(all) > 0 {
		r.P50ms = ms(all[len(all)*50/100])
		r.P99ms = ms(all[min(len(all)*99/100, len(all)-1)])
		r.MaxMs = ms(all[len(all)-1])
	}
	return r
}

// cpuTime returns the CPU time (user+system) used by this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// sender is one SMTP session; it reconnects after a connection-level error.
type sender struct {
	o options
	b *benchmsg.Builder
	c *client
}

// connect opens the session.
func (s *sender) connect() (err error) {
	s.c, err = dial(s.o)
	return err
}

// send transmits message seq and returns its acceptance latency.
func (s *sender) send(seq int) (time.Duration, error) {
	if s.c == nil {
		if err := s.connect(); err != nil {
			time.Sleep(50 * time.Millisecond) // do not spin on a refusing server
			return 0, err
		}
	}
	d, err := s.c.send(s.o.from, s.o.to, s.b.Build(seq))
	if err != nil {
		// A rejected transaction leaves the session usable after RSET; any
		// other error drops the connection.
		var re *replyError
		if !errors.As(err, &re) || s.c.reset() != nil {
			s.c.conn.Close()
			s.c = nil
		}
	}
	return d, err
}

// quit ends the session politely.
func (s *sender) quit() {
	if s.c != nil {
		s.c.quit()
	}
}
