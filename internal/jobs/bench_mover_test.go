package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// BenchmarkAcceptanceWithMover measures what the history mover and a
// retention pass cost acceptance (issue 18: at most 10 % of throughput or
// p99). The seed store holds 100,000 messages of 40 to 31 days ago in ten
// day files. Each run copies it, adds a backlog of 100,000 finished
// messages still in the main file (what a 1,500 msg/s intake leaves in
// about a minute, or an upgrade) and enqueues 2 KiB messages from 16
// writers for BENCH_WINDOW (default 12 s: the mover works in steps of a
// few hundred milliseconds and then rests up to 9× as long, so a window of
// a few seconds catches one step or none and says little about its share):
//
//   - idle: the mover off (the baseline);
//   - mover: the mover on, the backlog finished 1 to 2 minutes ago (the
//     mover on time: its base share, historyMoveDuty);
//   - mover-behind: the backlog finished 12 to 22 minutes ago (the mover
//     far behind: its largest share, historyMoveMaxDuty);
//   - drop: the mover off, a retention pass (30 days) dropping the ten
//     old day files at the window's start;
//   - mover-alone: the mover on (on time) and no writer: its own rate;
//   - idle-paced, mover-paced: idle and mover with the writers offering
//     BENCH_RATE enqueues a second (default 3,000, below what 16 writers
//     take closed-loop) open-loop, latency from each enqueue's due time:
//     the cost at a steady intake rather than at saturation.
//
// The variants run in turn, BENCH_ROUNDS times (default 3), so that a
// busy machine's drift hits each alike; read each round's line. It reports
// enqueues/s, their p50 and p99, and the records the mover moved (moved,
// moved/s) and the pass dropped. Run with -benchtime 1x.
func BenchmarkAcceptanceWithMover(b *testing.B) {
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	seed := filepath.Join(b.TempDir(), "seed", "s.db")
	now := time.Now()
	func() {
		os.MkdirAll(filepath.Dir(seed), 0o700)
		st, err := store.Open(seed, time.Second, store.WithoutHistoryMover())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		loadFinished(b, st, now.Add(-40*24*time.Hour), 10*24*time.Hour)
		for {
			_, more, err := st.MoveHistory(now.Add(-20*24*time.Hour), 1024)
			if err != nil {
				b.Fatal(err)
			}
			if !more {
				break
			}
		}
	}()
	rate := 3000.0
	if v, err := strconv.ParseFloat(os.Getenv("BENCH_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	type variant struct {
		name                  string
		age                   time.Duration // of the backlog's newest
		mover, sweep, writers bool
		rate                  float64 // offered enqueues/s (0: closed loop)
	}
	variants := []variant{
		{"idle", time.Minute, false, false, true, 0},
		{"mover", time.Minute, true, false, true, 0},
		{"mover-behind", 12 * time.Minute, true, false, true, 0},
		{"drop", time.Minute, false, true, true, 0},
		{"mover-alone", time.Minute, true, false, false, 0},
		{"idle-paced", time.Minute, false, false, true, rate},
		{"mover-paced", time.Minute, true, false, true, rate},
	}
	for r := 1; r <= rounds; r++ {
		for _, v := range variants {
			b.Run(fmt.Sprintf("%s/round=%d", v.name, r), func(b *testing.B) {
				for range b.N {
					runMoverWindow(b, seed, v.age, v.mover, v.sweep, v.writers, v.rate)
				}
			})
		}
	}
}

// loadFinished writes 100,000 finished messages spread over span from
// from, over 100 teams, in st's main file (and its mover's list).
func loadFinished(b *testing.B, st *store.Store, from time.Time, span time.Duration) {
	ms := make([]*store.Message, 0, 100_000)
	for i := range 100_000 {
		at := from.Add(time.Duration(i) * (span / 100_000))
		ms = append(ms, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: fmt.Sprint("team_", i%100),
			From: "app@example.com", Subject: "history", Size: 2048, Status: state.MessageSent,
			Recipients: []store.Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: state.MessageSent, ProviderID: "dprov_x"}},
			CreatedAt:  at, UpdatedAt: at})
	}
	if err := st.LoadHistory(ms); err != nil {
		b.Fatal(err)
	}
}

// runMoverWindow runs one window of BenchmarkAcceptanceWithMover
// on a copy of seed with a backlog whose newest finished age ago, writers
// offering rate enqueues a second (0: closed loop), and reports its
// metrics.
func runMoverWindow(b *testing.B, seed string, age time.Duration, mover, sweep, writers bool, rate float64) {
	window := 12 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BENCH_WINDOW")); err == nil && d > 0 {
		window = d
	}
	b.StopTimer()
	path := filepath.Join(b.TempDir(), "s.db")
	copyStore(b, seed, path)
	func() {
		st, err := store.Open(path, time.Second, store.WithoutHistoryMover())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		loadFinished(b, st, time.Now().Add(-age-time.Minute), time.Minute)
	}()
	b.StartTimer()
	var opts []store.Option
	if !mover {
		opts = append(opts, store.WithoutHistoryMover())
	}
	st, err := store.Open(path, time.Second, opts...)
	if err != nil {
		b.Fatal(err)
	}
	before, _, err := st.HistoryBacklog()
	if err != nil {
		b.Fatal(err)
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	trims0 := st.MapTrims()
	pages0 := st.PageWrites()
	commits0, _, _ := st.CommitStats()
	ctx, cancel := context.WithCancel(context.Background())
	sweepWait := startSweep(ctx, st, sweep)
	var lat []time.Duration
	if writers {
		lat, _ = accept(b, st, window, rate)
	} else {
		t := time.NewTimer(window)
		<-t.C
	}
	after, _, err := st.HistoryBacklog()
	if err != nil {
		b.Fatal(err)
	}
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	b.ReportMetric(float64(st.MapTrims()-trims0), "trims")
	// The main file's page writes (and commits) a second: against the
	// idle variant's, what the mover adds to the commits it shares.
	commits1, _, _ := st.CommitStats()
	b.ReportMetric(float64(st.PageWrites()-pages0)/window.Seconds(), "pages/s")
	b.ReportMetric(float64(commits1-commits0)/window.Seconds(), "commits/s")
	b.ReportMetric(float64(ru1.Minflt-ru0.Minflt)/window.Seconds(), "faults/s")
	b.ReportMetric(float64(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano())/1e9/window.Seconds(), "cpus")
	b.ReportMetric(float64(st.FileStats().FreePages), "free-pages")
	cancel()
	swept, took := sweepWait()
	st.Close()
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(len(lat))/window.Seconds(), "enq/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(before-after), "moved")
	b.ReportMetric(float64(before-after)/window.Seconds(), "moved/s")
	b.ReportMetric(float64(swept.Messages), "dropped")
	b.ReportMetric(float64(took.Microseconds())/1000, "sweep-ms")
}
