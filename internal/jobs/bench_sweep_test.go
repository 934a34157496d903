package jobs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// BenchmarkAcceptanceDuringSweep measures what a retention sweep costs
// acceptance (issue 18: at most 10 % of throughput or p99). 16 writers
// enqueue 2 KiB messages (the durable commit an SMTP DATA waits for
// before its 250) for 4 s on a store holding 100,000 finished messages of
// 40 days ago, spread over 100 teams, in their day files: without a sweep
// ("idle"), and while a sweep drops them ("sweep": whole day files). A
// third run ("mover-backlog") has the same history still in the main file,
// as an upgraded store has it, with the background mover taking it to the
// day files during the window: the cost of the move itself. The last two
// have the history of four days ago, past the body retention (72 h) but
// not the log's, with its 2 KiB bodies still in the main file, as a
// steady daemon holds them: without a sweep ("bodies-idle") and while the
// sweep deletes the bodies ("body-sweep", the per-message deletes that
// remain in the main file). It reports enqueues/s and their p50 and p99,
// and how many records and bodies the sweep deleted in the window. Run
// with -benchtime 1x.
func BenchmarkAcceptanceDuringSweep(b *testing.B) {
	dir := b.TempDir()
	inMain, moved := filepath.Join(dir, "main", "seed.db"), filepath.Join(dir, "moved", "seed.db")
	withBodies := filepath.Join(dir, "bodies", "seed.db")
	now := time.Now()
	seedHistory(b, inMain, now.Add(-40*24*time.Hour), false)
	copyStore(b, inMain, moved)
	moveAll(b, moved, now)
	// Four days ago: past the body retention (72 h), not the log's.
	seedHistory(b, withBodies, now.Add(-4*24*time.Hour), true)
	moveAll(b, withBodies, now)
	for _, v := range []struct {
		name        string
		seed        string
		sweep, move bool
	}{
		{"idle", moved, false, false},
		{"sweep", moved, true, false},
		{"mover-backlog", inMain, false, true},
		{"bodies-idle", withBodies, false, false},
		{"body-sweep", withBodies, true, false},
	} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				path := filepath.Join(b.TempDir(), "s.db")
				copyStore(b, v.seed, path)
				var opts []store.Option
				if !v.move {
					opts = append(opts, store.WithoutHistoryMover())
				}
				st, err := store.Open(path, time.Second, opts...)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				sweepWait := startSweep(ctx, st, v.sweep)
				lat, n := acceptFor(b, st, 4*time.Second)
				cancel()
				swept, took := sweepWait()
				st.Close()
				slices.Sort(lat)
				b.ReportMetric(float64(n)/4, "enq/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(swept.Messages), "swept")
				b.ReportMetric(float64(swept.Bodies), "bodies-swept")
				b.ReportMetric(float64(took.Microseconds())/1000, "sweep-ms")
			}
		})
	}
}

// seedHistory writes 100,000 finished 2 KiB messages of 100 teams, one
// every 10 ms from old on, to a new store at path, with their 2 KiB
// bodies when bodies.
func seedHistory(b *testing.B, path string, old time.Time, bodies bool) {
	os.MkdirAll(filepath.Dir(path), 0o700)
	st, err := store.Open(path, time.Second, store.WithoutHistoryMover())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ms := make([]*store.Message, 0, 100_000)
	ids := make([]string, 0, 100_000)
	for i := range 100_000 {
		at := old.Add(time.Duration(i) * 10 * time.Millisecond)
		ms = append(ms, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: fmt.Sprint("team_", i%100),
			From: "app@example.com", Subject: "history", Size: 2048, Status: state.MessageSent,
			Recipients: []store.Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: state.MessageSent, ProviderID: "dprov_x"}},
			CreatedAt:  at, UpdatedAt: at})
		ids = append(ids, ms[i].ID)
	}
	if err := st.LoadHistory(ms); err != nil {
		b.Fatal(err)
	}
	if bodies {
		if err := st.LoadBodies(ids, bytes.Repeat([]byte("x"), 2048)); err != nil {
			b.Fatal(err)
		}
	}
}

// moveAll moves the history of the store at path to its day files.
func moveAll(b *testing.B, path string, now time.Time) {
	st, err := store.Open(path, time.Second, store.WithoutHistoryMover())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for {
		if _, more, err := st.MoveHistory(now, 1024); err != nil || !more {
			if err != nil {
				b.Fatal(err)
			}
			return
		}
	}
}

// copyStore copies the store file from and its history day files to the
// file to (and its directory's history).
func copyStore(b *testing.B, from, to string) {
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		b.Fatal(err)
	}
	copyFile(b, from, to)
	days, _ := filepath.Glob(filepath.Join(filepath.Dir(from), "history", "*.db"))
	if err := os.MkdirAll(filepath.Join(filepath.Dir(to), "history"), 0o700); err != nil {
		b.Fatal(err)
	}
	for _, d := range days {
		copyFile(b, d, filepath.Join(filepath.Dir(to), "history", filepath.Base(d)))
	}
}

// acceptFor runs 16 enqueuers for d and returns every enqueue's latency.
func acceptFor(b *testing.B, st *store.Store, d time.Duration) ([]time.Duration, int) {
	return accept(b, st, d, 0)
}

// accept runs 16 enqueuers for d, each closed-loop (rate 0) or offering
// its share of rate enqueues a second open-loop: the k-th enqueue of the
// whole is due at start + k/rate and its latency counts from then, so a
// stall shows in the latencies of those due during it (as bench/'s
// smtpload -rate). It returns every enqueue's latency.
func accept(b *testing.B, st *store.Store, d time.Duration, rate float64) ([]time.Duration, int) {
	const writers = 16
	body := make([]byte, 2048)
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for k := 0; ; k++ {
				due := time.Now()
				if rate > 0 {
					due = start.Add(time.Duration(float64(k*writers+w) / rate * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait) // pacing the offered load, not synchronisation
					}
				}
				if !due.Before(end) {
					break
				}
				now := time.Now()
				m := &store.Message{ID: store.NewID(store.PrefixMessage), TeamID: "team_live", From: "a@example.com",
					Status: state.MessagePending, NextAttemptAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now,
					Recipients: []store.Recipient{{Address: "b@example.net", Status: state.MessagePending}}}
				if err := st.Enqueue(m, body); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(due))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, len(lat)
}

func copyFile(b *testing.B, from, to string) {
	in, err := os.Open(from)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// startSweep runs one retention pass (30 days) over st in the background
// when on; wait blocks until it ended and returns what it dropped and how
// long it took (nothing when off).
func startSweep(ctx context.Context, st *store.Store, on bool) (wait func() (SweepStats, time.Duration)) {
	var swept SweepStats
	var took time.Duration
	done := make(chan struct{})
	if !on {
		close(done)
	} else {
		go func() {
			defer close(done)
			t0 := time.Now()
			swept, _ = NewSweeper(st, nil, nil, 0, 30*24*time.Hour).Sweep(ctx)
			took = time.Since(t0)
		}()
	}
	return func() (SweepStats, time.Duration) {
		<-done
		return swept, took
	}
}
