package mailapi

import (
	"fmt"
	"strings"
	"testing"
)

// headerEdgeCases are the header edge cases every parser's table covers:
// folded lines, bare LF and mixed endings, a missing header/body
// separator, malformed lines, and a header over 64 KiB.
var headerEdgeCases = []struct{ name, msg string }{
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

// short quotes s, cut to its start and length when long.
func short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…(%d)", s[:20], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func describeSplit(msg string) string {
	h, body := splitHeader([]byte(msg))
	var b strings.Builder
	for _, f := range h.fields {
		fmt.Fprintf(&b, "%q=%s;", f.name, short(string(f.raw)))
	}
	if body == nil {
		b.WriteString("body=nil")
	} else {
		fmt.Fprintf(&b, "body=%s", short(string(body)))
	}
	fmt.Fprintf(&b, " eol=%q", h.eol)
	return b.String()
}

// TestHeaderEdges pins how Prepare cuts a message into header fields and
// body on every edge case: lenient (a malformed line is a nameless field),
// raw bytes kept, a missing last line ending added in the header's own.
func TestHeaderEdges(t *testing.T) {
	want := map[string]string{}
	for _, w := range []struct{ name, want string }{
		{"crlf", "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=\"body\" eol=\"\\r\\n\""},
		{"folded", "\"a\"=\"A: 1\\r\\n folded\\r\\n\\tmore\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=\"body\" eol=\"\\r\\n\""},
		{"bare-lf", "\"a\"=\"A: 1\\n\";\"b\"=\"B: 2\\n\";body=\"body\" eol=\"\\n\""},
		{"mixed", "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\n\";body=\"body\" eol=\"\\r\\n\""},
		{"no-separator", "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=nil eol=\"\\r\\n\""},
		{"no-separator-crlf", "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=nil eol=\"\\r\\n\""},
		{"initial-continuation", "\"lead\"=\" lead: x\\r\\n\";\"a\"=\"A: 1\\r\\n\";body=\"\" eol=\"\\r\\n\""},
		{"no-colon", "\"a\"=\"A: 1\\r\\n\";\"\"=\"nocolon\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=\"\" eol=\"\\r\\n\""},
		{"cr-only-line", "\"a\"=\"A: 1\\r\\n\";body=\"B: 2\\r\\n\\r\\n\" eol=\"\\r\\n\""},
		{"bare-cr", "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: x\\ry\\r\\n\";body=\"\" eol=\"\\r\\n\""},
		{"empty-header", "body=\"body\" eol=\"\\r\\n\""},
		{"space-before-colon", "\"from\"=\"From : a\\r\\n\";body=\"\" eol=\"\\r\\n\""},
		{"header-in-body", "\"a\"=\"A: 1\\r\\n\";body=\"B: 2\\r\\n\" eol=\"\\r\\n\""},
		{"trailing-cr", "\"a\"=\"A: 1\\r\\n\";body=nil eol=\"\\r\\n\""},
		{"lf-fold", "\"a\"=\"A: 1\\n  folded \\n\";\"b\"=\"B: 2\\n\";body=\"\" eol=\"\\n\""},
		{"oversize", "\"a\"=\"A: xxxxxxxxxxxxxxxxx\"…(71685);\"b\"=\"B: 2\\r\\n\";body=\"body\" eol=\"\\r\\n\""},
	} {
		want[w.name] = w.want
	}
	for _, c := range headerEdgeCases {
		if got := describeSplit(c.msg); got != want[c.name] {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, want[c.name])
		}
	}
}
