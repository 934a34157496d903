package store

import (
	"os"
	"testing"
)

// TestMain runs the package's tests without the background mover: they
// inspect the main file's buckets, and the history tests move records
// themselves (MoveHistory) so that where each record is stays known.
func TestMain(m *testing.M) {
	moverAtOpen = false
	os.Exit(m.Run())
}
