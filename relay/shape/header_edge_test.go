package shape

import (
	"fmt"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/internal/mailhdr/hdrcases"
)

func describeScan(msg string) string {
	h := scanHeader([]byte(msg))
	var b strings.Builder
	for _, f := range h.fields {
		fmt.Fprintf(&b, "%q@%d-%d;", f.key[:min(len(f.key), 20)], f.start, f.end)
	}
	fmt.Fprintf(&b, "end=%d body=%d nl=%q", h.end, h.body, h.nl)
	return b.String()
}

// TestHeaderEdges pins where shaping finds a message's header fields,
// its end and its body on every edge case, since its edits splice at
// those offsets.
func TestHeaderEdges(t *testing.T) {
	hdrcases.Check(t, map[string]string{
		"crlf":                 "\"A\"@0-6;\"B\"@6-12;end=12 body=14 nl=\"\\r\\n\"",
		"folded":               "\"A\"@0-22;\"B\"@22-28;end=28 body=30 nl=\"\\r\\n\"",
		"bare-lf":              "\"A\"@0-5;\"B\"@5-10;end=10 body=11 nl=\"\\n\"",
		"mixed":                "\"A\"@0-6;\"B\"@6-11;end=11 body=13 nl=\"\\r\\n\"",
		"no-separator":         "\"A\"@0-6;\"B\"@6-10;end=10 body=10 nl=\"\\r\\n\"",
		"no-separator-crlf":    "\"A\"@0-6;\"B\"@6-12;end=12 body=12 nl=\"\\r\\n\"",
		"initial-continuation": "\"Lead\"@0-10;\"A\"@10-16;end=16 body=18 nl=\"\\r\\n\"",
		"no-colon":             "\"A\"@0-6;\"Nocolon\"@6-15;\"B\"@15-21;end=21 body=23 nl=\"\\r\\n\"",
		"cr-only-line":         "\"A\"@0-6;\"\\r\"@6-9;\"B\"@9-15;end=15 body=17 nl=\"\\r\\n\"",
		"bare-cr":              "\"A\"@0-6;\"B\"@6-14;end=14 body=16 nl=\"\\r\\n\"",
		"empty-header":         "end=0 body=2 nl=\"\\r\\n\"",
		"space-before-colon":   "\"From\"@0-10;end=10 body=12 nl=\"\\r\\n\"",
		"header-in-body":       "\"A\"@0-6;end=6 body=8 nl=\"\\r\\n\"",
		"trailing-cr":          "\"A\"@0-5;end=5 body=5 nl=\"\\r\\n\"",
		"lf-fold":              "\"A\"@0-15;\"B\"@15-20;end=20 body=21 nl=\"\\n\"",
		"oversize":             "\"A\"@0-71685;\"B\"@71685-71691;end=71691 body=71693 nl=\"\\r\\n\"",
	}, describeScan)
}
