package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// InlineLimit is the largest body kept inside bbolt, where it shares the
// grouped commit (one fsync for many messages). Larger bodies are spooled
// to their own file while DATA is read, so a 25 MB message never sits
// whole in memory and does not bloat the memory-mapped bbolt file; each
// costs its own fsync, which bench/ showed is slower than bbolt for
// typical (≤ 100 KiB) mail.
const InlineLimit = 128 << 10

// SpoolFile is a large body being written by an SMTP session.
type SpoolFile struct {
	f    *os.File
	path string
}

// CreateSpool starts the spool file of message id. The file only counts
// once Enqueue committed the message; an orphan left by a crash before
// that is removed by SweepSpool.
func (s *Store) CreateSpool(id string) (*SpoolFile, error) {
	if !ValidID(PrefixMessage, id) {
		return nil, fmt.Errorf("invalid message id %q", id)
	}
	path := filepath.Join(s.spoolDir, id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &SpoolFile{f: f, path: path}, nil
}

// Write appends body bytes.
func (sf *SpoolFile) Write(p []byte) (int, error) { return sf.f.Write(p) }

// Finish makes the bytes durable (the directory entry is made durable by
// the grouped commit of Enqueue).
func (sf *SpoolFile) Finish() error {
	if err := sf.f.Sync(); err != nil {
		sf.Abort()
		return err
	}
	return sf.f.Close()
}

// Abort discards a spool file that will not be enqueued.
func (sf *SpoolFile) Abort() {
	sf.f.Close()
	os.Remove(sf.path)
}

// Body is a message's bytes for one delivery attempt. Spooled bodies are
// memory-mapped, not copied; Release must be called when done.
type Body struct {
	data   []byte
	mapped bool
	pooled *[]byte
}

// Bytes returns the message; valid until Release.
func (b *Body) Bytes() []byte { return b.data }

// Release unmaps a spooled body or recycles an inline body's buffer.
func (b *Body) Release() {
	if b.mapped && len(b.data) > 0 {
		syscall.Munmap(b.data)
	}
	if b.pooled != nil {
		PutBuf(b.pooled)
		b.pooled = nil
	}
	b.data = nil
}

// OpenBody returns the body of message m.
func (s *Store) OpenBody(m *Message) (*Body, error) {
	if !m.Spooled {
		var b *Body
		err := s.readInline(m.ID, func(n int) []byte {
			p := GetBuf(n)
			b = &Body{data: *p, pooled: p}
			return *p
		})
		return b, err
	}
	f, err := os.Open(filepath.Join(s.spoolDir, m.ID))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 {
		return &Body{}, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &Body{data: data, mapped: true}, nil
}

// syncSpoolDir makes spool file creations and removals durable.
func (s *Store) syncSpoolDir() error {
	d, err := os.Open(s.spoolDir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// dropBody deletes a finished message's body wherever it is: the bbolt
// value in the same transaction, the spool file after the commit.
func (s *Store) dropBody(tx *bolt.Tx, m *Message, after *[]func()) error {
	if err := deleteBody(tx, m.ID); err != nil {
		return err
	}
	if m.Spooled {
		path := filepath.Join(s.spoolDir, m.ID)
		*after = append(*after, func() { os.Remove(path) })
	}
	return nil
}

// SweepSpool removes spool files that belong to no stored message: files
// of messages that were never committed (the client got no 250). Bodies of
// finished messages are kept for the retention period; the retention
// sweep (SweepSpooled) removes them.
func (s *Store) SweepSpool() (int, error) {
	entries, err := os.ReadDir(s.spoolDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		m, err := s.Message(e.Name())
		if err == nil && m.Spooled {
			continue
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return n, err
		}
		if os.Remove(filepath.Join(s.spoolDir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
