// Package hdrcases holds the header edge cases that the tables of every
// header reader built on mailhdr (relay's From check and log summary,
// shape, mailapi) run, so that all of them are held to the same inputs.
// Tests import it; the daemon does not.
package hdrcases

import (
	"fmt"
	"strings"
	"testing"
)

// Case is one message whose header is an edge case.
type Case struct{ Name, Msg string }

// Edge are the header edge cases every header reader's table covers:
// folded lines, bare LF and mixed endings, a missing header/body
// separator, malformed lines, and a header over 64 KiB.
var Edge = []Case{
	{"crlf", "A: 1\r\nB: 2\r\n\r\nbody"},
	{"folded", "A: 1\r\n folded\r\n\tmore\r\nB: 2\r\n\r\nbody"},
	{"bare-lf", "A: 1\nB: 2\n\nbody"},
	{"mixed", "A: 1\r\nB: 2\n\r\nbody"},
	{"no-separator", "A: 1\r\nB: 2"},
	{"no-separator-crlf", "A: 1\r\nB: 2\r\n"},
	{"initial-continuation", " lead: x\r\nA: 1\r\n\r\n"},
	{"no-colon", "A: 1\r\nnocolon\r\nB: 2\r\n\r\n"},
	{"cr-only-line", "A: 1\r\n\r\r\nB: 2\r\n\r\n"},
	{"bare-cr", "A: 1\r\nB: x\ry\r\n\r\n"},
	{"empty-header", "\r\nbody"},
	{"space-before-colon", "From : a\r\n\r\n"},
	{"header-in-body", "A: 1\r\n\r\nB: 2\r\n"},
	{"trailing-cr", "A: 1\r"},
	{"lf-fold", "A: 1\n  folded \nB: 2\n\n"},
	{"oversize", "A: " + strings.Repeat("x", 70<<10) + "\r\nB: 2\r\n\r\nbody"},
}

// Short quotes s, cut to its start and length when long, so that the
// oversize case reads in a table.
func Short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…(%d)", s[:20], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// Check runs describe over every Edge case and compares its answer with
// want[case name].
func Check(t testing.TB, want map[string]string, describe func(msg string) string) {
	t.Helper()
	for _, c := range Edge {
		if got := describe(c.Msg); got != want[c.Name] {
			t.Errorf("%s:\n got %q\nwant %q", c.Name, got, want[c.Name])
		}
	}
}
