package store

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// syncedFreelist reads the bbolt file's current meta page (the one of the
// two with the higher transaction ID) and reports whether it points at a
// written freelist. Without one, every open rebuilds the freelist by
// walking the whole file (issue 18: seconds and the file's size in RSS).
// Meta page layout: a 16-byte page header, then magic, version, page size
// and flags (4 bytes each), the root bucket (16), the freelist page ID
// (8), the high-water page ID (8) and the transaction ID (8).
func syncedFreelist(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(data[16+8:]))
	var freelist, txid uint64
	for i := 0; i < 2; i++ {
		m := data[i*pageSize:]
		if id := binary.LittleEndian.Uint64(m[16+48:]); i == 0 || id > txid {
			txid, freelist = id, binary.LittleEndian.Uint64(m[16+32:])
		}
	}
	return freelist != ^uint64(0)
}

// TestFreelistWritten: the store writes bbolt's freelist with its commits,
// and a file written without one (as builds before schema 6 did) gets it
// at its next open, so later opens read it instead of scanning the file.
func TestFreelistWritten(t *testing.T) {
	s, path := openTest(t)
	enqueueN(t, s, 3, time.Now())
	s.Close()
	if !syncedFreelist(t, path) {
		t.Fatal("the store's commits left no freelist in the file")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("x"), nil) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if syncedFreelist(t, path) {
		t.Fatal("a NoFreelistSync commit should have left the file without a freelist")
	}
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if !syncedFreelist(t, path) {
		t.Fatal("opening the store did not write the freelist of a file that had none")
	}
}

// TestFileStatsCountsFreedPages: what /metrics reports of the main file
// (smtpmux_store_free_pages, _freelist_bytes, _file_bytes) follows the
// file: pages freed by deletes show as free or pending, and the freelist
// that lists them has bytes.
func TestFileStatsCountsFreedPages(t *testing.T) {
	s, _ := openTest(t)
	before := s.FileStats()
	if before.SizeBytes <= 0 {
		t.Fatalf("SizeBytes = %d on an open store", before.SizeBytes)
	}
	scratch := []byte("test_scratch")
	val := make([]byte, 3000) // one leaf page each, about
	if err := s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(scratch)
		if err != nil {
			return err
		}
		for i := 0; i < 2000; i++ {
			if err := b.Put(binary.BigEndian.AppendUint32(nil, uint32(i)), val); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	grown := s.FileStats()
	if grown.SizeBytes < before.SizeBytes+2000*3000 {
		t.Errorf("SizeBytes %d after writing 6 MB, was %d", grown.SizeBytes, before.SizeBytes)
	}
	for i := 0; i < 2; i++ { // the second commit releases the first one's pending pages
		if err := s.update(func(tx *bolt.Tx) error {
			if tx.Bucket(scratch) == nil {
				return nil
			}
			return tx.DeleteBucket(scratch)
		}); err != nil {
			t.Fatal(err)
		}
	}
	after := s.FileStats()
	if freed := after.FreePages + after.PendingPages; freed < 1000 {
		t.Errorf("free %d + pending %d pages after deleting ~1,500 pages of values", after.FreePages, after.PendingPages)
	}
	if after.FreelistBytes < 8*after.FreePages {
		t.Errorf("FreelistBytes %d for %d free pages (8 bytes each at least)", after.FreelistBytes, after.FreePages)
	}
	if after.SizeBytes != grown.SizeBytes {
		t.Errorf("SizeBytes %d after deletes, want %d (bbolt never shrinks the file)", after.SizeBytes, grown.SizeBytes)
	}
}
