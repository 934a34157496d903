// Command bigstore builds a large store through the store API, for the
// issue 18 scale figures that a package benchmark cannot reach (a team
// with 1,000,000 messages among 1,000 others), and measures what opening
// such a store costs.
//
//	bigstore -db /tmp/big/smtpmux.db -own 1000000 -others 1000000 -teams 1000
//	bigstore -db /tmp/big/smtpmux.db -open
//	bigstore -db /tmp/big/smtpmux.db -rewind5   # then -open times the 5 → 6 migration
//
// Build mode writes finished messages spread over the last -days days
// (store.LoadHistory: every index and counter is maintained), the own
// team's evenly among the others', optionally sweeps the oldest -sweep
// fraction away (retention, which leaves free pages as a live store has),
// and prints the own team's ID. Open mode opens the store, runs the
// report reads for -team, and prints one JSON line: open time, the
// process's VmRSS right after Open, and the time of each read.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/smtpmux/smtpmux/internal/state"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

var enqueues *int

func main() {
	db := flag.String("db", "", "store file (its directory gets a spool/ too)")
	own := flag.Int("own", 100000, "messages of the measured team")
	others := flag.Int("others", 100000, "messages of the other teams")
	teams := flag.Int("teams", 1000, "number of other teams")
	days := flag.Int("days", 30, "the history spans this many days before now")
	sweep := flag.Float64("sweep", 0, "then delete this fraction of the history, oldest first (retention)")
	open := flag.Bool("open", false, "open an existing store and measure instead of building")
	team := flag.String("team", "", "team to read in -open mode")
	enqueues = flag.Int("enqueues", 0, "in -open mode, then enqueue this many messages one by one and time them")
	rewind := flag.Bool("rewind5", false, "drop the history indexes and counters and set schema 5, so the next -open migrates 5 → 6")
	flag.Parse()
	if *db == "" {
		log.Fatal("-db is required")
	}
	if *rewind {
		if err := rewindToSchema5(*db); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *open {
		measureOpen(*db, *team)
		return
	}
	build(*db, *own, *others, *teams, *days, *sweep)
}

func build(path string, own, others, teams, days int, sweep float64) {
	s, err := store.Open(path, time.Second, store.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ownTeam := store.NewID(store.PrefixTeam)
	ids := make([]string, max(teams, 1))
	for i := range ids {
		ids[i] = store.NewID(store.PrefixTeam)
	}
	now := time.Now().UTC()
	span := time.Duration(days) * 24 * time.Hour
	total := own + others
	batch := make([]*store.Message, 0, 20000)
	start := time.Now()
	for i := 0; i < total; i++ {
		team := ownTeam
		if i*own/total == (i+1)*own/total {
			team = ids[i%len(ids)]
		}
		at := now.Add(-span + span/time.Duration(total)*time.Duration(i))
		batch = append(batch, message(team, at, i))
		if len(batch) == cap(batch) || i == total-1 {
			if err := s.LoadHistory(batch); err != nil {
				log.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	fmt.Fprintf(os.Stderr, "loaded %d messages in %v\n", total, time.Since(start).Round(time.Millisecond))
	if sweep > 0 {
		cut := now.Add(-span + time.Duration(float64(span)*sweep))
		n := 0
		for after := ""; ; {
			k, next, err := s.SweepMessages(cut, after, 2000)
			if err != nil {
				log.Fatal(err)
			}
			n += k
			if next == "" {
				break
			}
			after = next
		}
		fmt.Fprintf(os.Stderr, "swept %d messages\n", n)
	}
	fmt.Println(ownTeam)
}

func message(team string, at time.Time, i int) *store.Message {
	status := state.MessageSent
	if i%10 == 0 {
		status = state.MessageFailed
	}
	done := at.Add(time.Second)
	provider := "dprov_06h4xtc3y8001pqbe2bc2ads"
	return &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: team, Source: "http",
		From: "sender@example.com", Subject: fmt.Sprintf("order %d", i),
		Recipients: []store.Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: status,
			Code: 250, ProviderID: provider, UpdatedAt: &done}},
		Status: status, Attempts: []store.Attempt{{N: 1, ProviderID: provider, StartedAt: at, Status: state.Attempt(status)}},
		CreatedAt: at, UpdatedAt: done, Size: 1200}
}

// vmRSS is this process's resident set in MB, from /proc/self/status.
func vmRSS() float64 { return procStatus("VmRSS:") }

func maxf(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}

// procStatus is the field (with its colon) of /proc/self/status in MB.
func procStatus(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			var kb float64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb)
			return kb / 1024
		}
	}
	return -1
}

func measureOpen(path, team string) {
	out := map[string]any{}
	// The peak of anonymous memory during Open (a migration's heap): the
	// file-backed pages of the map are the page cache, and VmHWM counts
	// them too.
	stop, peak := make(chan struct{}), make(chan float64)
	go func() {
		max := 0.0
		for t := time.NewTicker(20 * time.Millisecond); ; {
			max = maxf(max, procStatus("RssAnon:"))
			select {
			case <-stop:
				peak <- max
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	s, err := store.Open(path, time.Second, store.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	close(stop)
	out["peak_anon_mb_during_open"] = <-peak
	out["open_ms"] = time.Since(start).Milliseconds()
	out["rss_mb_after_open"] = vmRSS()
	if fi, err := os.Stat(path); err == nil {
		out["file_mb"] = fi.Size() >> 20
	}
	if team != "" {
		now := time.Now()
		timed := func(name string, fn func() error) {
			t := time.Now()
			if err := fn(); err != nil {
				log.Fatal(err)
			}
			out[name+"_ms"] = float64(time.Since(t).Microseconds()) / 1000
		}
		n := 0
		timed("logs_newest_page", func() error {
			return s.MessagesDesc(team, "", time.Time{}, time.Time{}, func(*store.Message) bool { n++; return n < 51 })
		})
		all := func(*store.Message) bool { return true }
		// What GET /emails/metrics reads for the default window (the
		// last 24 hours, ends not on a minute): the counters, and the
		// messages of the partial minutes at both ends.
		timed("metrics_24h", func() error {
			from := now.Add(-24 * time.Hour)
			if err := s.StatusCounts(team, "", from, now, func(time.Time, string, int64) {}); err != nil {
				return err
			}
			if err := s.MessagesBetween(team, from, from.Truncate(time.Minute).Add(time.Minute), all); err != nil {
				return err
			}
			return s.MessagesBetween(team, now.Truncate(time.Minute), now, all)
		})
		timed("metrics_30d", func() error {
			return s.StatusCounts(team, "", now.Add(-30*24*time.Hour), now, func(time.Time, string, int64) {})
		})
		// GET /providers/usage: 7 days of counters and one partial minute.
		timed("usage_7d", func() error {
			since := now.Add(-7 * 24 * time.Hour)
			if err := s.RecipientCounts(team, since, func(time.Time, string, string, int64) {}); err != nil {
				return err
			}
			if err := s.SentCounts(team, since, func(time.Time, string, time.Time, int64) {}); err != nil {
				return err
			}
			return s.MessagesBetween(team, since, since.Truncate(time.Minute).Add(time.Minute), all)
		})
		page := func(walk func(fn func(*store.Message) bool) error) func() error {
			return func() error {
				n := 0
				return walk(func(*store.Message) bool { n++; return n < 51 })
			}
		}
		timed("logs_status_failed_page", page(func(fn func(*store.Message) bool) error {
			return s.MessagesDescByStatus(team, string(state.MessageFailed), "", time.Time{}, time.Time{}, fn)
		}))
		timed("logs_status_rejected_none", page(func(fn func(*store.Message) bool) error {
			return s.MessagesDescByStatus(team, string(state.MessageRejected), "", time.Time{}, time.Time{}, fn)
		}))
		timed("logs_provider_page", page(func(fn func(*store.Message) bool) error {
			return s.MessagesDescByProvider(team, "dprov_06h4xtc3y8001pqbe2bc2ads", "", time.Time{}, time.Time{}, fn)
		}))
		timed("logs_window_day_page", page(func(fn func(*store.Message) bool) error {
			day := now.Add(-10 * 24 * time.Hour).Truncate(24 * time.Hour)
			return s.MessagesDesc(team, "", day, day.Add(24*time.Hour), fn)
		}))
		// A search that matches nothing reads the whole team history
		// (pre-filtered on the stored bytes, so nothing is decoded).
		timed("logs_search_none", func() error {
			return s.WalkLog(store.LogWalk{TeamID: team, Text: "nobody"}, func(*store.Message) bool { return true })
		})
		out["rss_mb_after_reads"] = vmRSS()
	}
	// The freelist's share of a commit: one message per commit (each
	// Enqueue waits for its fsync), the slowest case of the grouped
	// committer. -enqueues messages are left in the queue of team_bench.
	if *enqueues > 0 {
		start := time.Now()
		for i := 0; i < *enqueues; i++ {
			m := message("team_bench", time.Now(), i)
			m.NextAttemptAt = time.Now().Add(24 * time.Hour)
			if err := s.Enqueue(m, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
				log.Fatal(err)
			}
		}
		out["enqueue_commit_ms"] = float64(time.Since(start).Microseconds()) / 1000 / float64(*enqueues)
		commits, total, _ := s.CommitStats()
		out["commit_ms_avg"] = float64(total.Microseconds()) / 1000 / float64(max(commits, 1))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
