package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/internal/testpeer"
	"github.com/smtpmux/smtpmux/store"
)

// TestRetentionDropsHistoryFiles: a data_dir whose history is in day files
// (history/<day>.db), some older than the log retention (30 days by
// default), some not; the daemon's first retention pass at start unlinks
// the old days' files whole, so the disk space they took is given back,
// and leaves the recent day's file as it was.
func TestRetentionDropsHistoryFiles(t *testing.T) {
	d := &proc{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t)}
	dataDir := filepath.Join(d.dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dataDir, "smtpmux.db"), time.Second, store.WithoutHistoryMover())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var ms []*store.Message
	for i := range 3000 {
		at := now.Add(-40*24*time.Hour + time.Duration(i%3)*24*time.Hour + time.Duration(i)*time.Second)
		if i%100 == 0 {
			at = now.Add(-2 * 24 * time.Hour) // kept: younger than the retention
		}
		ms = append(ms, &store.Message{ID: store.NewIDAt(store.PrefixMessage, at), TeamID: "team_x", From: "app@example.com",
			Subject: strings.Repeat("history ", 64), Status: state.MessageSent, CreatedAt: at, UpdatedAt: at,
			Recipients: []store.Recipient{{Address: fmt.Sprintf("user%d@example.net", i), Status: state.MessageSent, ProviderID: "dprov_x"}}})
	}
	if err := st.LoadHistory(ms); err != nil {
		t.Fatal(err)
	}
	for {
		_, more, err := st.MoveHistory(now, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			break
		}
	}
	st.Close()
	histDir := filepath.Join(dataDir, "history")
	size := func() (files []string, bytes int64) {
		entries, _ := os.ReadDir(histDir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".db") {
				files, bytes = append(files, e.Name()), bytes+info.Size()
			}
		}
		return files, bytes
	}
	before, beforeBytes := size()
	recent := utcDayName(now.Add(-2 * 24 * time.Hour))
	if len(before) != 4 {
		t.Fatalf("day files before: %v", before)
	}
	recentInfo, err := os.Stat(filepath.Join(histDir, recent))
	if err != nil {
		t.Fatal(err)
	}

	startProc(t, d, nil)
	waitFor(t, 20*time.Second, "the retention pass to drop the old day files", func() bool {
		files, _ := size()
		return len(files) == 1 && files[0] == recent
	})
	_, bytes := size()
	if bytes != recentInfo.Size() || bytes >= beforeBytes {
		t.Fatalf("history takes %d bytes after retention (before %d, the kept day %d)", bytes, beforeBytes, recentInfo.Size())
	}
	t.Logf("history: %d bytes in %d files, then %d bytes", beforeBytes, len(before), bytes)
}

func utcDayName(t time.Time) string { return t.UTC().Format("2006-01-02") + ".db" }

// TestMoveAfterSetsTheMoversDelay: with [retention] move_after = "1s" a
// delivered message leaves the main file for its day file within seconds
// (the history backlog gauge falls back to 0 and the day's file appears),
// where the default minute keeps it in the main file (the backlog of 1 that
// TestSystemdNotifyReadyzAndMetrics sees).
func TestMoveAfterSetsTheMoversDelay(t *testing.T) {
	up := testpeer.Start(t, testpeer.Options{})
	d := newDaemon(t, map[string]string{"": "[retention]\nmove_after = \"1s\""})
	_, key := d.setupRelay(map[string]any{"name": "up", "smtp_host": up.Host(), "smtp_port": up.Port(), "smtp_protocol": "none"})
	c := d.client(key)
	if _, err := sendOne(c, "a@example.com", []string{"b@example.net"}, msgBody("moved")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	up.WaitMessages(t, 1, 10*time.Second)
	waitFor(t, 20*time.Second, "the delivered message to move to its day file", func() bool {
		body := d.metrics()
		if !strings.Contains(body, `outcome="sent"`) || metricValue(t, body, "smtpmux_history_backlog_messages") != 0 {
			return false
		}
		days, _ := filepath.Glob(filepath.Join(d.dir, "data", "history", "*.db"))
		return len(days) == 1
	})
}
