package store

// Finished messages in day files (issue 18): a finished message's record,
// with its team, status and provider index keys and its counters, moves
// from the main file to a bbolt file of the UTC day it was created on,
// <data>/history/2026-12-07.db (history_move.go). Retention closes and
// unlinks whole day files (DropHistory): O(1) per day, no per-message
// deletes competing with acceptance, and the space goes back to the
// filesystem at once. Reads open only the days their window covers
// (history_read.go). The queue, bodies and state of record stay in the
// main file, which stays as small as the queue plus the last minutes of
// finished mail.
//
// A day file has the main file's bucket names and key shapes for what it
// holds (bMessages, bMsgByTeam, bMsgByFilter, bMsgCounts), so the index and
// counter helpers work on either transaction; and, of its own, the SES
// upstream ids of its messages (hUpstream), so that dropping the day can
// drop their entries in the main file's shared index.

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// hUpstream is upstream key → message id of the day's messages that
	// have one (upstream_ids.go): what DropHistory removes from the main
	// file's index before the file goes.
	hUpstream = []byte("upstream")
	// keyMaxUpdated (bMeta) is be64(unix nanos) of the latest UpdatedAt
	// of any record ever written to the day: the day may go once that is
	// past the retention cutoff.
	keyMaxUpdated = []byte("max_updated")
	// keyDayCount (bMeta) is be64 of how many records the day holds.
	keyDayCount = []byte("count")
	dayBuckets  = [][]byte{bMeta, bMessages, bMsgByTeam, bMsgByFilter, bMsgCounts, hUpstream}
)

// dayLayout names day files: the UTC date, so names sort by day.
const dayLayout = "2006-01-02"

// maxOpenDays caps how many day files are open at once: each open file
// is a memory map (address space; its resident pages are the page cache's,
// which the kernel reclaims) and a file descriptor. 48 keeps the days of
// the default 30-day retention open across requests: opening a file costs
// about 0.6 ms, and with a cap of 8 a 30-day report reopened most of them
// every time (0.2 → 20 ms, BenchmarkTeamReports). Files in use by a reader
// stay open past the cap until released; a longer retention reads its
// older days through the LRU.
const maxOpenDays = 48

// history is the set of day files under dir.
type history struct {
	dir string
	// rw orders the two-file steps (a move, a restore, a drop: writers)
	// against the reads that combine files (readers), so a reader never
	// sees a record or its counters in both files or in neither. Writers
	// hold it for two commits; readers for one chunk.
	rw sync.RWMutex
	// pause is held by each two-file step (and DropHistory) around its
	// work, and by Backup for the whole copy, so that the copy sees no
	// record move; readers do not take it.
	pause sync.Mutex
	mu    sync.Mutex // guards days, tick and each dayFile's db, refs, used
	// days holds every day file that exists, open or not, by day.
	days map[int64]*dayFile
	tick uint64
}

// dayFile is one day's file.
type dayFile struct {
	day  time.Time
	path string
	db   *bolt.DB // nil while closed
	refs int
	used uint64
	// maxUpdated caches keyMaxUpdated (0: not read yet).
	maxUpdated int64
}

func openHistory(dir string) (*history, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	h := &history{dir: dir, days: map[int64]*dayFile{}}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".db")
		if !ok {
			continue
		}
		day, err := time.Parse(dayLayout, name)
		if err != nil {
			continue
		}
		h.days[day.Unix()] = &dayFile{day: day, path: filepath.Join(dir, e.Name())}
	}
	return h, nil
}

// dayList returns the days that have a file, in [from, to] (zero bounds
// are open), oldest first.
func (h *history) dayList(from, to time.Time) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Time
	for _, d := range h.days {
		if (!from.IsZero() && d.day.Before(utcDay(from))) || (!to.IsZero() && d.day.After(to)) {
			continue
		}
		out = append(out, d.day)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// acquire opens (creating it if create) the file of day and holds it open
// until release. A missing file without create is (nil, nil).
func (h *history) acquire(day time.Time, create bool) (*dayFile, error) {
	day = utcDay(day)
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.days[day.Unix()]
	if d == nil {
		if !create {
			return nil, nil
		}
		d = &dayFile{day: day, path: filepath.Join(h.dir, day.Format(dayLayout)+".db")}
	}
	if d.db == nil {
		h.evictLocked()
		db, err := openDayFile(d.path, create)
		if err != nil {
			return nil, err
		}
		if create && h.days[day.Unix()] == nil {
			// The new file's directory entry must be durable before a
			// move deletes the records it took from the main file.
			if err := syncDir(h.dir); err != nil {
				db.Close()
				return nil, err
			}
		}
		d.db = db
		h.days[day.Unix()] = d
	}
	h.tick++
	d.refs, d.used = d.refs+1, h.tick
	return d, nil
}

func (h *history) release(d *dayFile) {
	h.mu.Lock()
	d.refs--
	h.mu.Unlock()
}

// evictLocked closes the least recently used unreferenced files while
// maxOpenDays or more are open.
func (h *history) evictLocked() {
	for {
		open := 0
		var lru *dayFile
		for _, d := range h.days {
			if d.db == nil {
				continue
			}
			open++
			if d.refs == 0 && (lru == nil || d.used < lru.used) {
				lru = d
			}
		}
		if open < maxOpenDays || lru == nil {
			return
		}
		lru.db.Close()
		lru.db = nil
	}
}

func openDayFile(path string, create bool) (*bolt.DB, error) {
	if !create {
		if _, err := os.Stat(path); err != nil {
			return nil, err
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open history file %s: %w", path, err)
	}
	missing := false
	db.View(func(tx *bolt.Tx) error {
		for _, b := range dayBuckets {
			missing = missing || tx.Bucket(b) == nil
		}
		return nil
	})
	if missing {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range dayBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("history file %s: %w", path, err)
		}
	}
	return db, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// close closes every open day file (the store is closing).
func (h *history) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.days {
		if d.db != nil {
			d.db.Close()
			d.db = nil
		}
	}
}

// idDays are the days whose file may hold message id: the day of the
// time in the ID and the days within seekSlack of it (CreatedAt, which
// picks the file, is taken at acceptance, as the ID).
func idDays(id string) []time.Time {
	t, ok := idTime(PrefixMessage, id)
	if !ok {
		return nil
	}
	out := []time.Time{utcDay(t)}
	for _, d := range []time.Time{utcDay(t.Add(-seekSlack)), utcDay(t.Add(seekSlack))} {
		if !d.Equal(out[len(out)-1]) && !d.Equal(out[0]) {
			out = append(out, d)
		}
	}
	return out
}

// idTime is the creation time encoded in an ID of that kind, to the
// millisecond (idFloor's inverse).
func idTime(prefix, id string) (time.Time, bool) {
	if len(id) < len(prefix)+10 || !strings.HasPrefix(id, prefix) {
		return time.Time{}, false
	}
	// 10 characters carry 50 bits: the 48 time bits and 2 more.
	raw, err := lowerBase32.DecodeString(id[len(prefix):len(prefix)+10] + "000000")
	if err != nil || len(raw) < 6 {
		return time.Time{}, false
	}
	var b [8]byte
	copy(b[2:], raw[:6])
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:]))).UTC(), true
}
