package relay

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// minorFaults is the process's count of minor page faults (pages mapped
// in from the page cache, e.g. bbolt's map after a drop).
func minorFaults() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// writtenBytes is the bytes the process handed to write-like system
// calls (/proc/self/io wchar: sockets and bbolt's pwrites alike), 0 where
// that cannot be read. Per message it shows what a body costs in writes
// beyond the one copy each socket and the store need.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// providerCounts are the team sizes the routing benchmarks compare: the
// issue asks that 200 providers in scope cost about what 2 do.
var providerCounts = []int{2, 50, 200}

// BenchmarkHealthPick measures the per-message routing work of an attempt:
// the team's cached route set, live breaker and quota state under the
// health lock, the weighted pick, the reservation, and the encoding of
// what the claim stores with the attempt.
func BenchmarkHealthPick(b *testing.B) {
	for _, n := range providerCounts {
		b.Run(fmt.Sprint(n, "providers"), func(b *testing.B) {
			h := newHealth(ManagedLimits{}, nil)
			ps := make([]*store.Provider, n)
			team := store.NewID(store.PrefixTeam)
			for i := range ps {
				w := 1 + i%100
				ps[i] = &store.Provider{ID: store.NewID(store.PrefixProvider), TeamID: team, Type: "smtp",
					Status: state.ProviderActive, Percentage: &w}
			}
			m := &store.Message{ID: "eml_bench", TeamID: team, Scope: store.Scope{Type: "all"},
				Recipients: []store.Recipient{{Address: "b@example.com", Status: state.MessagePending}}}
			r := rand.New(rand.NewPCG(1, 1))
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			var sets routeSets
			for i := 0; i < b.N; i++ {
				rs := sets.get(team, m.Scope, ps)
				d, res := h.pickSet(m, rs, nil, now, r.IntN)
				if res == nil {
					b.Fatal("no pick")
				}
				if _, err := json.Marshal(routing.Stored{ScopeType: "all", Set: "20261207/" + rs.hash, Decision: d}); err != nil {
					b.Fatal(err)
				}
				h.complete(res, true, now)
			}
		})
	}
}

// BenchmarkDelivery measures accepted-and-delivered messages end to end in
// one process: 8 SMTP clients submit over loopback, the scheduler picks
// among the team's n providers (in-process fake upstreams) and records
// every attempt in bbolt. ns/op is per delivered message.
//
// The last sub-benchmark sends 100 KiB bodies (issue 19's large-message
// case) through 2 providers: every copy of the body between the DATA
// reader and the upstream, and the bbolt pages its value rewrites.
func BenchmarkDelivery(b *testing.B) {
	const line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"
	for _, n := range providerCounts {
		b.Run(fmt.Sprint(n, "providers"), func(b *testing.B) {
			benchDelivery(b, n, strings.Repeat(line, 32))
		})
	}
	b.Run("2providers/100KiB", func(b *testing.B) {
		benchDelivery(b, 2, strings.Repeat(line, 100<<10/len(line)))
	})
}

// benchDelivery is one BenchmarkDelivery case: n providers, bodies of
// text (CRLF lines) under a three-field header.
func benchDelivery(b *testing.B, n int, text string) {
	h := newHarnessClock(b, func(c *Config) { c.MaxMessageBytes = 1 << 20 }, nil, nil)
	for range n - 1 {
		h.addProvider("fake", nil)
	}
	const clients = 8
	body := "From: a@example.com\r\nTo: b@example.com\r\nSubject: bench\r\n\r\n" + text
	conns := make([]*smtp.Client, clients)
	for i := range conns {
		conns[i] = dialAuthed(b, h)
	}
	delivered := func() int {
		h.fakeMu.Lock()
		defer h.fakeMu.Unlock()
		total := 0
		for _, f := range h.fakes {
			total += f.count()
		}
		return total
	}
	base := delivered()
	b.ReportAllocs()
	cpu0 := cpuTime()
	faults0 := minorFaults()
	wchar0 := writtenBytes()
	commits0, _, _ := h.store.CommitStats()
	writes0 := h.store.PageWrites()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		share := b.N / clients
		if i < b.N%clients {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range share {
				if _, err := send(c, "a@example.com", []string{"b@example.com"}, body); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for delivered()-base < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", delivered()-base, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	// CPU and page writes per message: steadier than ns/op on a
	// shared machine (bench/RESULTS.md).
	b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(minorFaults()-faults0)/float64(b.N), "minflt/op")
	b.ReportMetric(float64(writtenBytes()-wchar0)/1024/float64(b.N), "wKiB/op")
	commits1, _, _ := h.store.CommitStats()
	b.ReportMetric(float64(h.store.PageWrites()-writes0)/float64(b.N), "pagewrites/op")
	if commits1 > commits0 {
		b.ReportMetric(float64(h.store.PageWrites()-writes0)/float64(commits1-commits0), "pages/commit")
	}
}
