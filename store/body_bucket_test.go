package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	bolt "go.etcd.io/bbolt"
)

// processWritten is the bytes this process handed to write-like system
// calls so far (/proc/self/io wchar).
func processWritten(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /proc/self/io under CI: the bytes written cannot be checked:", err)
		}
		t.Skip("no /proc/self/io:", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no wchar in /proc/self/io")
	return 0
}

// TestLargeBodyWrittenOnce: enqueuing a 100 KiB body writes it once. In a
// value of the bodies bucket it shared a leaf with up to three earlier
// bodies (bbolt splits no leaf of four keys or fewer), and each commit
// adding one wrote the leaf whole again: about 300 KiB per message.
func TestLargeBodyWrittenOnce(t *testing.T) {
	s, _ := openTest(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	// A few first, so the next ones have neighbours.
	for i := range 4 {
		if err := s.Enqueue(&Message{ID: fmt.Sprintf("eml_a%04d", i), NextAttemptAt: time.Now()}, body); err != nil {
			t.Fatal(err)
		}
	}
	const n = 12
	w0 := processWritten(t)
	for i := range n {
		if err := s.Enqueue(&Message{ID: fmt.Sprintf("eml_b%04d", i), NextAttemptAt: time.Now()}, body); err != nil {
			t.Fatal(err)
		}
	}
	per := (processWritten(t) - w0) / n
	t.Logf("written per 100 KiB message: %d KiB", per>>10)
	// The body, its record, index pages, the branch pages above them and
	// the meta page: well under 1.5 bodies.
	if per > int64(len(body))*3/2 {
		t.Errorf("each enqueue wrote %d KiB for a %d KiB body", per>>10, len(body)>>10)
	}
	for i := range n {
		if got, err := s.Body(fmt.Sprintf("eml_b%04d", i)); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestBodyLayouts: a small body is a value of the bodies bucket, a large
// one a bucket of its own; both read back whole and are deleted by the
// retention sweep, and so is a large body a file written before the
// change holds as a plain value.
func TestBodyLayouts(t *testing.T) {
	s, _ := openTest(t)
	small := []byte("Subject: s\r\n\r\nsmall\r\n")
	large := bytes.Repeat([]byte("0123456789abcde\n"), bodyBucketMin/16+1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for _, b := range [][]byte{small, large, large} {
		m := newMsg(t0)
		m.ID = NewIDAt(PrefixMessage, t0) // accepted at t0, as its record says: the sweep's walk ends at the cutoff's IDs
		if err := s.Enqueue(m, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	old := ids[2] // rewritten below as the old layout had it
	err := s.update(func(tx *bolt.Tx) error {
		if err := deleteBody(tx, old); err != nil {
			return err
		}
		return tx.Bucket(bBodies).Put([]byte(old), large)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bBodies)
		for i, own := range []bool{false, true, false} {
			if got := b.Bucket([]byte(ids[i])) != nil; got != own {
				t.Errorf("body %d in a bucket of its own: %v, want %v", i, got, own)
			}
		}
		return nil
	})
	for i, want := range [][]byte{small, large, large} {
		got, err := s.Body(ids[i])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("body %d: %d bytes, %v", i, len(got), err)
		}
		m := &Message{ID: ids[i]}
		d, err := s.OpenBody(m)
		if err != nil || !bytes.Equal(d.Bytes(), want) {
			t.Fatalf("delivery copy of body %d: %v", i, err)
		}
		d.Release()
	}
	for _, id := range ids {
		if _, err := s.UpdateMessage(id, func(x *Message) error {
			x.State, x.Status, x.UpdatedAt = StateDone, state.MessageSent, t0
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	n, _, err := s.SweepBodies(t0.Add(time.Hour), "", 100)
	if err != nil || n != len(ids) {
		t.Fatalf("sweep: %d bodies, %v; want %d", n, err, len(ids))
	}
	for i, id := range ids {
		if _, err := s.Body(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("body %d after the sweep: %v", i, err)
		}
	}
}
