package relay

import (
	"strings"
	"testing"
)

// TestCountCommand: every command counts towards the limit except RCPT
// within the recipient cap of an open transaction; progress starts over.
func TestCountCommand(t *testing.T) {
	tests := []struct {
		name    string
		cmds    string // space-separated; "+" is progress (a queued message)
		maxRcpt int
		limit   int
		wantOK  int // commands accepted before the first refusal (-1: none refused)
	}{
		{"noops", "NOOP NOOP NOOP NOOP", 5, 3, 3},
		{"rsets and noops", "RSET NOOP RSET NOOP", 5, 3, 3},
		{"transactions with progress", "MAIL RCPT RCPT DATA + MAIL RCPT DATA + MAIL RCPT DATA +", 5, 2, -1},
		{"a transaction to the recipient cap", "MAIL RCPT RCPT RCPT DATA", 3, 2, -1},
		{"RCPT past the cap counts", "MAIL RCPT RCPT RCPT RCPT RCPT", 3, 2, 5},
		{"RCPT without MAIL counts", "RCPT RCPT RCPT", 5, 2, 2},
		{"RSET ends the free RCPTs", "MAIL RSET RCPT", 5, 2, 2},
		{"transactions without progress", "MAIL RCPT DATA MAIL RCPT DATA", 5, 3, 5},
		{"off", strings.Repeat("NOOP ", 100), 5, 0, -1},
		{"a body in many chunks", "MAIL RCPT " + strings.Repeat("BDAT:65536 ", 50) + "BDAT:100:LAST", 5, 3, -1},
		{"empty chunks count", "MAIL RCPT " + strings.Repeat("BDAT:0 ", 10), 5, 3, 4},
		{"small chunks count", "MAIL RCPT BDAT:10 BDAT:1023 BDAT:x BDAT:1024:LAST", 5, 3, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &trackedConn{}
			got := -1
			n := 0
			for _, cmd := range strings.Fields(tc.cmds) {
				if cmd == "+" {
					c.progress(false)
					continue
				}
				verb, arg, _ := strings.Cut(cmd, ":")
				if !c.countCommand(verb, strings.ReplaceAll(arg, ":", " "), tc.maxRcpt, tc.limit) {
					got = n
					break
				}
				n++
			}
			if got != tc.wantOK {
				t.Fatalf("%q with limit %d: %d accepted before the refusal, want %d", tc.cmds, tc.limit, got, tc.wantOK)
			}
		})
	}
}

// TestClientKey: IPv4 addresses count alone, IPv6 ones by their /64.
