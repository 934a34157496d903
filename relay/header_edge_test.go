package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net/textproto"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/smtpmux/smtpmux/internal/mailhdr/hdrcases"
)

func describeStrict(msg string, complete bool) string {
	fs, ok := strictHeader([]byte(msg), complete)
	if !ok {
		return "refused"
	}
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s=%s;", hdrcases.Short(f.name), hdrcases.Short(f.value))
	}
	return b.String()
}

func describeReadHeader(msg string) string {
	h := readHeader([]byte(msg))
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=", k)
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s,", hdrcases.Short(v))
		}
		b.WriteString(";")
	}
	return b.String()
}

// TestHeaderEdges pins how the relay reads a message's header at its two
// call sites, on every edge case: the strict parse that guards a mailbox
// password's From (whole message, and only its first bytes), and the
// lenient one that fills the message log's Subject and Message-ID.
func TestHeaderEdges(t *testing.T) {
	want := map[string][3]string{}
	for _, w := range []struct{ name, strict, partial, lenient string }{
		{"crlf", "\"A\"=\" 1\";\"B\"=\" 2\";", "\"A\"=\" 1\";\"B\"=\" 2\";", "A=\"1\",;B=\"2\",;"},
		{"folded", "\"A\"=\" 1 folded\\tmore\";\"B\"=\" 2\";", "\"A\"=\" 1 folded\\tmore\";\"B\"=\" 2\";", "A=\"1 folded more\",;B=\"2\",;"},
		{"bare-lf", "refused", "refused", "A=\"1\",;B=\"2\",;"},
		{"mixed", "refused", "refused", "A=\"1\",;B=\"2\",;"},
		{"no-separator", "\"A\"=\" 1\";\"B\"=\" 2\";", "refused", "A=\"1\",;B=\"2\",;"},
		{"no-separator-crlf", "\"A\"=\" 1\";\"B\"=\" 2\";", "refused", "A=\"1\",;B=\"2\",;"},
		{"initial-continuation", "refused", "refused", ""},
		{"no-colon", "refused", "refused", "A=\"1\",;"},
		{"cr-only-line", "refused", "refused", "A=\"1\",;"},
		{"bare-cr", "refused", "refused", "A=\"1\",;"},
		{"empty-header", "refused", "refused", ""},
		{"space-before-colon", "refused", "refused", "From =\"a\",;"},
		{"header-in-body", "\"A\"=\" 1\";", "\"A\"=\" 1\";", "A=\"1\",;"},
		{"trailing-cr", "refused", "refused", ""},
		{"lf-fold", "refused", "refused", "A=\"1 folded\",;B=\"2\",;"},
		{"oversize", "\"A\"=\" xxxxxxxxxxxxxxxxxxx\"…(71681);\"B\"=\" 2\";", "\"A\"=\" xxxxxxxxxxxxxxxxxxx\"…(71681);\"B\"=\" 2\";", "A=\"xxxxxxxxxxxxxxxxxxxx\"…(65533),;"},
	} {
		want[w.name] = [3]string{w.strict, w.partial, w.lenient}
	}
	for _, c := range hdrcases.Edge {
		got := [3]string{describeStrict(c.Msg, true), describeStrict(c.Msg, false), describeReadHeader(c.Msg)}
		if got != want[c.Name] {
			t.Errorf("%s:\n got %q\nwant %q", c.Name, got, want[c.Name])
		}
	}
}

// textprotoHeader is how readHeader read the header before it used
// mailhdr: net/textproto over the block before the first CRLFCRLF, at
// most 64 KiB of it. FuzzReadHeaderAsTextproto holds readHeader to it.
func textprotoHeader(body []byte) textproto.MIMEHeader {
	end := bytes.Index(body, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(body)
	}
	if end > 64<<10 {
		end = 64 << 10
	}
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(body[:end:end], "\r\n\r\n"...))))
	h, _ := tr.ReadMIMEHeader()
	return h
}

func FuzzReadHeaderAsTextproto(f *testing.F) {
	for _, c := range hdrcases.Edge {
		f.Add([]byte(c.Msg))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := readHeader(b), textprotoHeader(b)
		if len(got) != len(want) {
			t.Fatalf("%q: %q, textproto %q", b, got, want)
		}
		for k, v := range want {
			if !slices.Equal(got[k], v) {
				t.Fatalf("%q: %s = %q, textproto %q", b, k, got[k], v)
			}
		}
	})
}
