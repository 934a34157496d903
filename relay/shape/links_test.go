package shape

import (
	"bytes"
	"encoding/base64"
	"errors"
	"mime/quotedprintable"
	"reflect"
	"strings"
	"testing"
)

const page = `<html><head><link rel="stylesheet" href="https://cdn.example/s.css"></head><body>
<p>Hello <a href="https://example.com/a?x=1&amp;y=2">first</a>,
<A HREF='HTTP://Example.com/B'>second</A> and <a class=x href=http://example.com/c>third</a>.</p>
<a href="mailto:bob@example.com">mail</a> <a href="tel:+15551234">call</a>
<a href="#top">top</a> <a href="/relative">rel</a> <a href="//cdn.example/x">proto-rel</a>
<a data-smtpmux-notrack href="https://example.com/private">keep</a>
<map><area shape=rect href="https://example.com/area"></map>
<script>var s = '<a href="https://example.com/in-script">';</script>
<!-- <a href="https://example.com/in-comment"> -->
</body></html>
`

var pageURLs = []string{
	"https://example.com/a?x=1&y=2", "HTTP://Example.com/B", "http://example.com/c", "https://example.com/area",
}

func qp(s string) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func b64(s []byte, lineLen int, nl string) []byte {
	enc := base64.StdEncoding.EncodeToString(s)
	var b strings.Builder
	for len(enc) > lineLen {
		b.WriteString(enc[:lineLen] + nl)
		enc = enc[lineLen:]
	}
	b.WriteString(enc + nl)
	return []byte(b.String())
}

// alternative builds a multipart/alternative message whose HTML part has
// the given transfer encoding, charset and already-encoded body.
func alternative(cte, charset string, encoded []byte) []byte {
	var b bytes.Buffer
	b.Write(crlf("From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: links\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b1\"\n\npreamble\n" +
		"--b1\nContent-Type: text/plain; charset=utf-8\n\nSee https://example.com/a in text.\n" +
		"--b1\nContent-Type: text/html; charset=" + charset + "\nContent-Transfer-Encoding: " + cte + "\n\n"))
	b.Write(encoded)
	b.Write(crlf("\n--b1--\nepilogue\n"))
	return b.Bytes()
}

func TestRewriteLinksEncodings(t *testing.T) {
	wire := crlf(page)
	latin1 := append(crlf("<p>caf\xe9 "), crlf(page)...)
	// ISO-2022-JP: the shifted run contains the bytes of `<a href="` which
	// are really kanji; they must not be read as a tag.
	jis := []byte("<p>\x1b$B<a href=\"http://fake/\x1b(B</p>\r\n" + string(crlf(page)))
	cases := []struct {
		name      string
		msg       []byte
		wantN     int
		wantInDoc []string // substrings of the decoded output HTML
	}{
		{"7bit", alternative("7bit", "us-ascii", wire), 4, nil},
		{"8bit utf-8", alternative("8bit", "utf-8", append(crlf("<p>Grüße</p>\n"), wire...)), 4, []string{"Grüße"}},
		{"quoted-printable", alternative("quoted-printable", "utf-8", qp(string(crlf("<p>Grüße "+strings.Repeat("long ", 30)+"</p>\n"+page)))), 4, []string{"Grüße"}},
		{"base64 76 CRLF", alternative("base64", "utf-8", b64(wire, 76, "\r\n")), 4, nil},
		{"base64 64 LF lines", alternative("base64", "utf-8", b64(wire, 64, "\n")), 4, nil},
		{"latin-1 8bit", alternative("8bit", "iso-8859-1", latin1), 4, []string{"caf\xe9"}},
		{"windows-1252 qp", alternative("quoted-printable", "windows-1252", qp(string(latin1))), 4, []string{"caf\xe9"}},
		{"iso-2022-jp", alternative("7bit", "iso-2022-jp", jis), 4, []string{"\x1b$B<a href=\"http://fake/\x1b(B"}},
		{"utf-16 skipped", alternative("base64", "utf-16", b64([]byte("\xff\xfe<\x00a\x00"), 76, "\r\n")), 0, nil},
		{"unknown encoding skipped", alternative("x-uuencode", "utf-8", wire), 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, urls := counter()
			out, n, err := RewriteLinks(tc.msg, "click.example.org", tok)
			if err != nil || n != tc.wantN {
				t.Fatalf("n=%d err=%v, want n=%d", n, err, tc.wantN)
			}
			if n == 0 {
				if !bytes.Equal(out, tc.msg) {
					t.Fatal("nothing rewritten but output differs")
				}
				return
			}
			if !reflect.DeepEqual(*urls, pageURLs) {
				t.Errorf("token urls = %q, want %q", *urls, pageURLs)
			}
			in, got := htmlPart(t, tc.msg), htmlPart(t, out)
			for i := range pageURLs {
				if !strings.Contains(got, "https://click.example.org/t/tok"+string(rune('0'+i))) {
					t.Errorf("link %d not rewritten in %q", i, got)
				}
			}
			for _, s := range append(tc.wantInDoc, "mailto:bob@example.com", "tel:+15551234", `"#top"`, `"/relative"`,
				`"//cdn.example/x"`, "https://example.com/private", "https://cdn.example/s.css",
				"https://example.com/in-script", "https://example.com/in-comment") {
				if !strings.Contains(got, s) {
					t.Errorf("%q should be untouched in %q", s, got)
				}
			}
			if err := sameHTMLButHrefs([]byte(in), []byte(got), "https://click.example.org/t/"); err != nil {
				t.Error(err)
			}
			// Everything outside the HTML part's body is byte-identical.
			hdrEnd := bytes.Index(tc.msg, []byte("Content-Transfer-Encoding: "))
			hdrEnd += bytes.Index(tc.msg[hdrEnd:], []byte("\r\n\r\n")) + 4
			tail := crlf("\n--b1--\nepilogue\n")
			if !bytes.Equal(out[:hdrEnd], tc.msg[:hdrEnd]) || !bytes.HasSuffix(out, tail) {
				t.Error("bytes outside the HTML part body changed")
			}
		})
	}
}

func TestRewriteLinksPreservesEncodingStyle(t *testing.T) {
	body := b64(crlf(page), 64, "\n")
	out, n, err := RewriteLinks(alternative("base64", "utf-8", body), "t.example", func(string) string { return "x" })
	if err != nil || n != 4 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	start := bytes.Index(out, []byte("base64\r\n\r\n")) + len("base64\r\n\r\n")
	end := bytes.Index(out, []byte("\r\n--b1--"))
	for _, line := range strings.SplitAfter(string(out[start:end]), "\n") {
		if len(line) > 65 || strings.Contains(line, "\r") {
			t.Fatalf("base64 line %q does not keep the 64-char LF layout", line)
		}
	}

	qpMsg := alternative("quoted-printable", "utf-8", qp(string(crlf(strings.Repeat("<p>Grüße</p>", 20)+page))))
	out, _, _ = RewriteLinks(qpMsg, "t.example", func(string) string { return "x" })
	start = bytes.Index(out, []byte("quoted-printable\r\n\r\n"))
	for _, line := range strings.Split(string(out[start:]), "\r\n") {
		if len(line) > 76 {
			t.Fatalf("quoted-printable line longer than 76: %q", line)
		}
	}
}

func TestRewriteLinksNested(t *testing.T) {
	msg := crlf(`From: a@example.org
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/plain

https://example.com/plain
--alt
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<a href=3D"https://example.com/deep">deep</a>
--alt--

--rel
Content-Type: image/png
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--

--outer
Content-Type: text/html; name=attached.html
Content-Disposition: attachment; filename=attached.html

<a href="https://example.com/attachment">file</a>
--outer
Content-Type: message/rfc822

Content-Type: text/html

<a href="https://example.com/forwarded">fwd</a>
--outer--
`)
	tok, urls := counter()
	out, n, err := RewriteLinks(msg, "t.example", tok)
	if err != nil || n != 1 || (*urls)[0] != "https://example.com/deep" {
		t.Fatalf("n=%d err=%v urls=%q", n, err, *urls)
	}
	if !bytes.Contains(out, []byte(`<a href=3D"https://t.example/t/tok0">deep</a>`)) {
		t.Fatalf("deep link not rewritten:\n%s", out)
	}
	for _, s := range []string{"example.com/plain", "example.com/attachment", "example.com/forwarded", "iVBORw0KGgo="} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("%s changed", s)
		}
	}
	if _, err := mimeLeaves(out); err != nil {
		t.Fatal(err)
	}
}

func TestRewriteLinksLeavesAlone(t *testing.T) {
	signed := append(crlf("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; b=x; bh=y\n"),
		alternative("7bit", "utf-8", crlf(page))...)
	cases := []struct {
		name    string
		msg     []byte
		domain  string
		wantErr error
	}{
		{"dkim signed", signed, "t.example", ErrDKIMSigned},
		{"plain text only", crlf("From: a@example.org\nSubject: hi\n\nhttps://example.com/\n"), "t.example", nil},
		{"not MIME at all", []byte("this is not a header\r\n\r\n<a href=\"https://x.example/\">"), "t.example", ErrBrokenMIME},
		{"unclosed multipart", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<a href=\"https://x.example/\">\n"), "t.example", ErrBrokenMIME},
		{"multipart without boundary", crlf("Content-Type: multipart/mixed\n\n--b\n"), "t.example", ErrBrokenMIME},
		{"bad tracking domain", alternative("7bit", "utf-8", crlf(page)), "t.example/\"><script>", nil},
		{"empty", nil, "t.example", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, n, err := RewriteLinks(tc.msg, tc.domain, func(string) string { return "x" })
			if n != 0 || !bytes.Equal(out, tc.msg) {
				t.Fatalf("n=%d, output changed", n)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.name == "bad tracking domain" && err == nil {
				t.Fatal("bad tracking domain accepted")
			}
		})
	}
}

func TestRewriteLinksBadToken(t *testing.T) {
	msg := alternative("7bit", "utf-8", crlf(page))
	for _, bad := range []string{"", `a"b`, "a b", "a/b", "ü"} {
		out, n, err := RewriteLinks(msg, "t.example", func(string) string { return bad })
		if err == nil || n != 0 || !bytes.Equal(out, msg) {
			t.Errorf("token %q: n=%d err=%v", bad, n, err)
		}
	}
}

func TestRewriteLinksLimits(t *testing.T) {
	// A line at 990 octets would pass 998 if its short href grew; that link
	// stays, the one on the next line is rewritten.
	long := `<a href="http://a.b/">x</a>` + strings.Repeat("y", 990-27) + "\r\n" + `<a href="https://example.com/ok">ok</a>` + "\r\n"
	out, n, err := RewriteLinks(alternative("7bit", "utf-8", []byte(long)), "tracking.example.org", func(string) string { return "0123456789" })
	if err != nil || n != 1 || !bytes.Contains(out, []byte(`href="http://a.b/"`)) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	huge := append(crlf(page), bytes.Repeat([]byte("z"), maxPartSize)...)
	msg := alternative("8bit", "utf-8", huge)
	out, n, err = RewriteLinks(msg, "t.example", func(string) string { return "x" })
	if err != nil || n != 0 || &out[0] != &msg[0] {
		t.Fatalf("oversized part: n=%d err=%v", n, err)
	}
}

func TestScanAttrsMatchesTokenizer(t *testing.T) {
	// Awkward tag shapes where our offsets must agree with the tokenizer's
	// view; findLinks skips tags where they do not, so a mismatch shows up
	// as a missing rewrite.
	for _, tag := range []string{
		`<a href="https://x.example/1">`, `<a href = 'https://x.example/1' >`, `<a =x href=https://x.example/1>`,
		`<a/href="https://x.example/1">`, `<a href="https://x.example/1"/>`, `<a HREF=https://x.example/1 href=https://other/>`,
		"<a\thref=\nhttps://x.example/1\f>", `<a title="a > b" href="https://x.example/1">`, `<a x/ href="https://x.example/1">`,
		`<a href=" https://x.example/1 ">`,
	} {
		links := findLinks([]byte(tag), csUTF8)
		if len(links) != 1 || links[0].url != "https://x.example/1" || tag[links[0].start:links[0].end] != "https://x.example/1" {
			t.Errorf("%s: got %+v", tag, links)
		}
	}
}
