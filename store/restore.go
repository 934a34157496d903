package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrInUse is Open's (and Restore's) error when another process holds the
// store file past the timeout: in practice, a daemon is running on it.
var ErrInUse = bolt.ErrTimeout

// CheckFile reports whether path is a usable smtpmux store: a consistent
// bbolt file with the store's meta bucket. It opens the file read-only and
// migrates nothing, so it serves both a backup just downloaded and one
// about to be restored.
func CheckFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		if tx.Bucket(bMeta) == nil {
			return errors.New("not an smtpmux store (no meta bucket)")
		}
		return nil
	})
}

// InUseError is Restore's refusal to replace a store that a process has
// open.
type InUseError struct {
	Path string
	Err  error // ErrInUse, or the error opening the file
}

func (e *InUseError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *InUseError) Unwrap() error { return e.Err }

// Restore puts the store file src (which should pass CheckFile) in place
// of dst. An existing dst must not be open in another process (an
// *InUseError otherwise); it is kept next to it, named after now, and
// kept is that name ("" when there was none); its history directory is
// kept the same way. The new dst is written with
// O_EXCL and synced.
//
// The lock check opens dst read-only with bbolt rather than with Open, so
// the file being replaced is neither migrated nor refused for a newer
// schema: restoring the backup taken before an upgrade is how a downgrade
// is done.
func Restore(src, dst string, now time.Time) (kept string, err error) {
	if _, err := os.Stat(dst); err == nil {
		db, err := bolt.Open(dst, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
		if err != nil {
			return "", &InUseError{Path: dst, Err: err}
		}
		db.Close()
		old := dst + ".before-restore-" + now.UTC().Format("20060102T150405Z")
		if err := os.Rename(dst, old); err != nil {
			return "", err
		}
		kept = old
		// A backup holds the history of the day files too (Backup): the
		// day files of the store being replaced go aside with it, or
		// records of both would be read as one store's.
		hist := filepath.Join(filepath.Dir(dst), "history")
		if _, err := os.Stat(hist); err == nil {
			if err := os.Rename(hist, hist+".before-restore-"+now.UTC().Format("20060102T150405Z")); err != nil {
				return kept, err
			}
		}
	}
	return kept, copyFile(src, dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
