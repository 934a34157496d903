package store

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

var pageSize = uintptr(os.Getpagesize())

// readMapped copies v, a value of the read-only transaction tx that spans
// several pages of bbolt's memory map, into dst (len(v) bytes) by reading
// the file at v's offset instead of through the map; false when it did
// not (a small value, a value outside the map, a failed read), and the
// caller copies v itself.
//
// Every body a delivery reads would otherwise be faulted into the map
// page by page and stay resident, so the process's RSS would grow with
// the bytes relayed (hundreds of MB at 100 KiB per message) although the
// data lives in the file and the page cache. Copying through the map and
// then dropping the pages again (MADV_DONTNEED) kept RSS flat but cost
// 18 % of the relay's CPU at 100 KiB per message (the faults, and the TLB
// flush of every drop, dear in a VM; bench/RESULTS.md, issue 19): pread
// copies the same page-cache pages without mapping them. The bytes are
// the same ones the map shows: bbolt maps the file from offset 0, writes
// it with pwrite only, and does not reuse a page an open read transaction
// can see, so they cannot change while tx is open.
func (s *Store) readMapped(tx *bolt.Tx, v, dst []byte) bool {
	if s.file == nil || tx.Writable() || len(v) < int(2*pageSize) || len(dst) != len(v) {
		return false
	}
	base := tx.DB().Info().Data
	start := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	if start < base || start+uintptr(len(v)) > base+uintptr(tx.Size()) {
		return false
	}
	n, err := s.file.ReadAt(dst, int64(start-base))
	return err == nil && n == len(v)
}

// trimEvery bounds how often the committer looks at whether to drop the
// map's resident pages.
const trimEvery = 50 * time.Millisecond

// trimSlack is how far the process's file-backed resident memory may grow
// past what it was after the last drop before the committer drops the map
// again. Dropping it every trimEvery whatever it held made every commit
// fault the same hot pages (branch pages, the newest leaves) back in: 6–7 %
// of the relay's CPU at 2 KiB per message (issue 19). With the slack those
// stay resident, at most trimSlack more of RSS, and a queue of 100 KiB
// bodies read for delivery still gets dropped several times a second.
const trimSlack = 8 << 20

// trimMapped drops this process's page-table entries for the whole bbolt
// memory map, after a commit, when the file-backed resident memory grew by
// trimSlack since the last drop (looked at at most every trimEvery).
// Commits read the pages they rewrite through the map (bbolt copies a
// leaf's other values when it adds or removes one, and a leaf of the
// bodies bucket holds at least two bodies), so every relayed body became
// resident again at the next commit next to it; readMapped cannot keep
// those reads out. Dropping is safe (a read-only shared file map:
// MADV_DONTNEED drops only this process's page-table entries), and the read transaction holds bbolt's map
// lock, so the map cannot move meanwhile. What is in use is faulted back
// from the page cache.
func (s *Store) trimMapped() {
	now := time.Now()
	if now.Sub(s.lastTrim) < trimEvery {
		return
	}
	s.lastTrim = now
	if rss, ok := fileRSS(); ok && rss < s.trimBase+trimSlack {
		// Other file-backed memory (a large spool file mapped for its
		// send) may have gone since the base was taken: the map's own
		// slack counts from the lower figure.
		s.trimBase = min(s.trimBase, rss)
		return
	}
	s.db.View(func(tx *bolt.Tx) error {
		dropMap(tx)
		return nil
	})
	s.mapTrims.Add(1)
	s.trimBase, _ = fileRSS()
}

// fileRSS is this process's file-backed (and shared) resident memory in
// bytes, from /proc/self/statm; ok is false where that cannot be read
// (then the committer drops the map at every look, as it always did).
func fileRSS() (n uint64, ok bool) {
	var buf [128]byte
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	k, _ := f.Read(buf[:])
	f.Close()
	// size resident shared text lib data dt, in pages
	fields := bytes.Fields(buf[:k])
	if len(fields) < 3 {
		return 0, false
	}
	pages, err := strconv.ParseUint(string(fields[2]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(pageSize), true
}

// dropMap drops this process's resident pages of the whole map, from the
// read-only transaction tx (which holds bbolt's map lock, so the map cannot
// move meanwhile).
func dropMap(tx *bolt.Tx) {
	// The root bucket's keys (bucket names) point into the map in a read
	// transaction (values of inline buckets may be copies, so the range
	// is checked); from one of them and the map's base address follows
	// the map as a slice.
	anchor, _ := tx.Cursor().First()
	base := tx.DB().Info().Data
	if tx.Writable() || len(anchor) == 0 {
		return
	}
	at := uintptr(unsafe.Pointer(unsafe.SliceData(anchor)))
	if at < base || at >= base+uintptr(tx.Size()) {
		return
	}
	start := unsafe.Add(unsafe.Pointer(unsafe.SliceData(anchor)), -int(at-base))
	dropPages(unsafe.Slice((*byte)(start), tx.Size()))
}

// dropPages drops this process's page-table entries of b, part of the
// read-only shared map; a variable so that tests can count the drops.
var dropPages = func(b []byte) { syscall.Madvise(b, syscall.MADV_DONTNEED) }

// MapTrims is how many times the committer dropped the map's resident
// pages so far (trimMapped): each costs the next commits faults on every
// page they touch, so benchmarks report it.
func (s *Store) MapTrims() int64 { return s.mapTrims.Load() }
