package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCheckFile: a store passes; a bbolt file without the store's meta
// bucket and a file that is not bbolt at all do not.
func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	st, err := Open(good, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := CheckFile(good); err != nil {
		t.Fatalf("a store: %v", err)
	}
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := CheckFile(other); err == nil {
		t.Fatal("a bbolt file without a meta bucket passed")
	}
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte("not a database at all, just text"), 0o600)
	if err := CheckFile(junk); err == nil {
		t.Fatal("a text file passed")
	}
}

// TestRestore: the previous file is kept under a dated name; a store
// another handle has open is refused with *InUseError and left alone.
func TestRestore(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "backup.db"), filepath.Join(dir, "smtpmux.db")
	for _, p := range []string{src, dst} {
		st, err := Open(p, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	live, err := Open(dst, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var inUse *InUseError
	if _, err := Restore(src, dst, time.Now()); !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) {
		t.Fatalf("restore over an open store: %v", err)
	}
	live.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	kept, err := Restore(src, dst, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := dst + ".before-restore-20260301T120000Z"; kept != want {
		t.Fatalf("kept %q, want %q", kept, want)
	}
	for _, p := range []string{kept, dst} {
		if err := CheckFile(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
}
