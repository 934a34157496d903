package jobs

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/store"
)

// TestSweeperRetention: finished messages past the log retention go (and
// only they: a message still queued is never swept, a younger one stays),
// whether still in the main file or moved to their day file (which then
// goes whole, file and all), webhook deliveries older than 7 days go, and
// Run does a pass at once and stops with its context.
func TestSweeperRetention(t *testing.T) {
	for _, moved := range []bool{false, true} {
		t.Run(map[bool]string{false: "in the main file", true: "in day files"}[moved], func(t *testing.T) {
			sweeperRetention(t, moved)
		})
	}
}

func sweeperRetention(t *testing.T, moved bool) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "smtpmux.db"), time.Second, store.WithoutHistoryMover())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	put := func(created time.Time, done bool) string {
		m := &store.Message{ID: store.NewIDAt(store.PrefixMessage, created), TeamID: "team_x", From: "a@example.com",
			Status: state.MessagePending, NextAttemptAt: created, CreatedAt: created, UpdatedAt: created,
			Recipients: []store.Recipient{{Address: "b@example.net", Status: state.MessagePending}}}
		if err := st.Enqueue(m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if done {
			if _, err := st.UpdateMessage(m.ID, func(x *store.Message) error {
				x.State, x.Status = store.StateDone, state.MessageSent
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		return m.ID
	}
	expired := put(now.Add(-11*24*time.Hour), true)
	stuck := put(now.Add(-11*24*time.Hour), false) // still queued: never swept
	kept := put(now.Add(-9*24*time.Hour), true)
	// A delivery older than 7 days.
	old := now.Add(-8 * 24 * time.Hour)
	if err := st.EnqueueWebhookDeliveries([]*store.WebhookDelivery{{ID: store.NewIDAt(store.PrefixDelivery, old),
		WebhookID: "twhk_x", Status: store.DeliveryFailed, CreatedAt: old}}); err != nil {
		t.Fatal(err)
	}
	wantDays := 0
	if moved {
		if n, more, err := st.MoveHistory(now, 10); err != nil || n != 2 || more {
			t.Fatalf("moved %d (more %v): %v", n, more, err)
		}
		wantDays = 1
	}
	sw := NewSweeper(st, nil, func() time.Time { return now }, 0, 10*24*time.Hour)
	if sw.BodyRetention != DefaultBodyRetention || sw.LogRetention != 10*24*time.Hour {
		t.Fatalf("retention %v %v", sw.BodyRetention, sw.LogRetention)
	}
	stats, err := sw.Sweep(t.Context())
	if err != nil || stats.Messages != 1 || stats.Deliveries != 1 || stats.HistoryDays != wantDays {
		t.Fatalf("%+v %v", stats, err)
	}
	days, _ := filepath.Glob(filepath.Join(dir, "history", "*.db"))
	if len(days) != wantDays { // the kept message's day only
		t.Fatalf("day files left: %v", days)
	}
	if _, err := st.Message(expired); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired message: %v", err)
	}
	for _, id := range []string{stuck, kept} {
		if _, err := st.Message(id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	// Run does a pass at once and stops with its context.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sw.Run(ctx); close(done) }()
	cancel()
	<-done
}

// TestSweeperRouteSets: routing sets go two days after the log retention
// of their day, so no kept attempt loses the set it refers to.
func TestSweeperRouteSets(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second, store.WithoutHistoryMover())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	for _, day := range []string{"20260307", "20260308", "20260309"} {
		if err := st.PutRouteSet("team_x", day, "h", []byte("[]")); err != nil {
			t.Fatal(err)
		}
	}
	// Log retention 10 days: attempts of 10 March may still be kept, and
	// with the margin sets from 8 March on stay.
	stats, err := NewSweeper(st, nil, func() time.Time { return now }, 0, 10*24*time.Hour).Sweep(t.Context())
	if err != nil || stats.RouteSets != 1 {
		t.Fatalf("%+v %v", stats, err)
	}
	if _, err := st.RouteSet("team_x", "20260307/h"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("7 March: %v", err)
	}
	if _, err := st.RouteSet("team_x", "20260308/h"); err != nil {
		t.Errorf("8 March: %v", err)
	}
}

// TestSweeperRestsByDuty: between batches a pass rests long enough that
// its batches take at most Duty of its time (never less than Pause), so
// a large backlog cannot take the committer from acceptance.
func TestSweeperRestsByDuty(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "smtpmux.db"), time.Second, store.WithoutHistoryMover())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	var ms []*store.Message
	for i := range 10 {
		at := now.Add(-40*24*time.Hour + time.Duration(i)*time.Second)
		ms = append(ms, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: "team_x", From: "a@example.com",
			Status: state.MessageSent, CreatedAt: at, UpdatedAt: at,
			Recipients: []store.Recipient{{Address: "b@example.net", Status: state.MessageSent}}})
	}
	if err := st.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	w := NewSweeper(st, nil, func() time.Time { return now }, 0, 30*24*time.Hour)
	if w.Batch != DefaultSweepBatch || w.Duty != DefaultSweepDuty {
		t.Fatalf("defaults: batch %d, duty %v", w.Batch, w.Duty)
	}
	// Each batch takes 15 ms on the sweep's stopwatch (one tick per reading).
	tick := now
	w.clock = func() time.Time { tick = tick.Add(15 * time.Millisecond); return tick }
	var rests []time.Duration
	w.sleep = func(_ context.Context, d time.Duration) error { rests = append(rests, d); return nil }
	w.Batch = 3
	stats, err := w.Sweep(t.Context())
	if err != nil || stats.Messages != 10 {
		t.Fatalf("%+v %v", stats, err)
	}
	if len(rests) == 0 {
		t.Fatal("no rest between batches")
	}
	for _, d := range rests {
		if d != 135*time.Millisecond { // 15 ms × 0.9 / 0.1
			t.Fatalf("rests %v, want 135ms each", rests)
		}
	}
	// Duty out of range: Pause alone.
	w.Duty, rests = 0, nil
	if err := st.LoadHistory(ms[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, d := range rests {
		if d != w.Pause {
			t.Fatalf("rests %v, want Pause %v", rests, w.Pause)
		}
	}
}
