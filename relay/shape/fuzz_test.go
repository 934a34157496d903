package shape

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"
)

// Both fuzzers also read the seed corpus committed under
// testdata/fuzz/<name>/ (the table-test messages and past finds); the f.Add
// seeds are the smallest interesting shapes.

const fuzzDomain = "trk.invalid"

var trackedRE = regexp.MustCompile(`https://trk\.invalid/t/TOK-[0-9]+-X`)

// FuzzRewriteLinks: never panics; any error or zero count returns the input
// unchanged; when go-message could parse the input, it parses the output
// into the same leaves, non-HTML leaves are byte-identical, and HTML leaves
// differ only in href values that became tracking URLs.
func FuzzRewriteLinks(f *testing.F) {
	f.Add(alternative("7bit", "utf-8", crlf(page)))
	f.Add(alternative("quoted-printable", "utf-8", qp(string(crlf(page)))))
	f.Add(alternative("base64", "utf-8", b64(crlf(page), 76, "\r\n")))
	f.Add(crlf("Content-Type: text/html\n\n<a href=https://x.example/>x</a>"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<a href='http://y.example'>\n--b--\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var urls []string
		out, n, err := RewriteLinks(msg, fuzzDomain, func(u string) string {
			urls = append(urls, u)
			return fmt.Sprintf("TOK-%d-X", len(urls)-1)
		})
		if err != nil || n == 0 {
			if !bytes.Equal(out, msg) {
				t.Fatalf("n=%d err=%v but output differs from input", n, err)
			}
			return
		}
		if n > len(urls) {
			t.Fatalf("n=%d but %d tokens minted", n, len(urls))
		}
		in, err := mimeLeaves(msg)
		if err != nil {
			return // not MIME go-message can read: nothing to compare against
		}
		got, err := mimeLeaves(out)
		if err != nil {
			t.Fatalf("input parsed, output does not: %v", err)
		}
		if len(in) != len(got) {
			t.Fatalf("%d leaves became %d", len(in), len(got))
		}
		for i := range in {
			a, b := in[i], got[i]
			if a.mediaType != b.mediaType {
				t.Fatalf("leaf %d: %s became %s", i, a.mediaType, b.mediaType)
			}
			if bytes.Equal(a.body, b.body) {
				continue
			}
			if a.mediaType != "text/html" {
				t.Fatalf("leaf %d (%s) changed", i, a.mediaType)
			}
			ha, hb := a.body, b.body
			if charsetMode(a.charset) == csISO2022 {
				// Judge structure as a decoder would see it: shifted runs are
				// text, whatever ASCII bytes they reuse.
				ha, _ = maskISO2022(ha)
				hb, _ = maskISO2022(hb)
			}
			if err := sameHTMLButHrefs(ha, hb, "https://"+fuzzDomain+"/t/"); err != nil {
				t.Fatalf("leaf %d: %v", i, err)
			}
			if !trackedRE.Match(a.body) && !onlyValuesReplaced(a.body, b.body) {
				t.Fatalf("leaf %d: bytes outside rewritten values changed:\n%q\n%q", i, a.body, b.body)
			}
		}
	})
}

// onlyValuesReplaced checks that in becomes out by replacing single-line
// spans with tracking URLs: the text between tracking URLs in out must
// appear in order in in, separated only by what was replaced.
func onlyValuesReplaced(in, out []byte) bool {
	locs := trackedRE.FindAllIndex(out, -1)
	pos, prev := 0, 0
	for i, loc := range locs {
		seg := out[prev:loc[0]]
		if i == 0 {
			if !bytes.HasPrefix(in, seg) {
				return false
			}
			pos = len(seg)
		} else {
			k := bytes.Index(in[pos:], seg)
			if k < 0 || bytes.ContainsAny(in[pos:pos+k], "\r\n") {
				return false
			}
			pos += k + len(seg)
		}
		prev = loc[1]
	}
	tail := out[prev:]
	return len(in)-pos >= len(tail) && bytes.HasSuffix(in[pos:], tail) && !bytes.ContainsAny(in[pos:len(in)-len(tail)], "\r\n")
}

// FuzzApplyDefaults: never panics; errors leave the input unchanged; the
// body is never touched; a message without From ends up with exactly one.
func FuzzApplyDefaults(f *testing.F) {
	f.Add([]byte("To: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add([]byte("From: \"Smith, A\" <a@example.org>\r\n\r\nbody"))
	f.Add([]byte("From:\r\nReply-To: \r\n x\r\n\r\n"))
	f.Add([]byte("Subject: no newline"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		body := msg[scanHeader(msg).body:]
		out, sentFrom, err := ApplyDefaults(msg, fullDefaults)
		if err != nil {
			if !bytes.Equal(out, msg) {
				t.Fatal("error but output changed")
			}
			return
		}
		if !bytes.HasSuffix(out, body) {
			t.Fatal("body changed")
		}
		h, _, err := parseHeader(out)
		if err != nil {
			t.Fatalf("output header no longer parses: %v", err)
		}
		hin, _, _ := parseHeader(msg)
		if !hasValue(hin.Values("From")) {
			if got := h.Values("From"); len(got) != 1 || sentFrom != "news@example.org" {
				t.Fatalf("From fields %q, sentFrom %q", got, sentFrom)
			}
		}
	})
}

func hasValue(vs []string) bool {
	for _, v := range vs {
		if len(bytes.TrimSpace([]byte(v))) > 0 {
			return true
		}
	}
	return false
}
