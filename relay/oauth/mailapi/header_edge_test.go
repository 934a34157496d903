package mailapi

import (
	"fmt"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/internal/mailhdr/hdrcases"
)

func describeSplit(msg string) string {
	h, body := splitHeader([]byte(msg))
	var b strings.Builder
	for _, f := range h.fields {
		fmt.Fprintf(&b, "%q=%s;", f.name, hdrcases.Short(string(f.raw)))
	}
	if body == nil {
		b.WriteString("body=nil")
	} else {
		fmt.Fprintf(&b, "body=%s", hdrcases.Short(string(body)))
	}
	fmt.Fprintf(&b, " eol=%q", h.eol)
	return b.String()
}

// TestHeaderEdges pins how Prepare cuts a message into header fields and
// body on every edge case: lenient (a malformed line is a nameless field),
// raw bytes kept, a missing last line ending added in the header's own.
func TestHeaderEdges(t *testing.T) {
	hdrcases.Check(t, map[string]string{
		"crlf":                 "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=\"body\" eol=\"\\r\\n\"",
		"folded":               "\"a\"=\"A: 1\\r\\n folded\\r\\n\\tmore\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=\"body\" eol=\"\\r\\n\"",
		"bare-lf":              "\"a\"=\"A: 1\\n\";\"b\"=\"B: 2\\n\";body=\"body\" eol=\"\\n\"",
		"mixed":                "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\n\";body=\"body\" eol=\"\\r\\n\"",
		"no-separator":         "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=nil eol=\"\\r\\n\"",
		"no-separator-crlf":    "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=nil eol=\"\\r\\n\"",
		"initial-continuation": "\"lead\"=\" lead: x\\r\\n\";\"a\"=\"A: 1\\r\\n\";body=\"\" eol=\"\\r\\n\"",
		"no-colon":             "\"a\"=\"A: 1\\r\\n\";\"\"=\"nocolon\\r\\n\";\"b\"=\"B: 2\\r\\n\";body=\"\" eol=\"\\r\\n\"",
		"cr-only-line":         "\"a\"=\"A: 1\\r\\n\";body=\"B: 2\\r\\n\\r\\n\" eol=\"\\r\\n\"",
		"bare-cr":              "\"a\"=\"A: 1\\r\\n\";\"b\"=\"B: x\\ry\\r\\n\";body=\"\" eol=\"\\r\\n\"",
		"empty-header":         "body=\"body\" eol=\"\\r\\n\"",
		"space-before-colon":   "\"from\"=\"From : a\\r\\n\";body=\"\" eol=\"\\r\\n\"",
		"header-in-body":       "\"a\"=\"A: 1\\r\\n\";body=\"B: 2\\r\\n\" eol=\"\\r\\n\"",
		"trailing-cr":          "\"a\"=\"A: 1\\r\\n\";body=nil eol=\"\\r\\n\"",
		"lf-fold":              "\"a\"=\"A: 1\\n  folded \\n\";\"b\"=\"B: 2\\n\";body=\"\" eol=\"\\n\"",
		"oversize":             "\"a\"=\"A: xxxxxxxxxxxxxxxxx\"…(71685);\"b\"=\"B: 2\\r\\n\";body=\"body\" eol=\"\\r\\n\"",
	}, describeSplit)
}
