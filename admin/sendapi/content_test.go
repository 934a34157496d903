package sendapi

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand"
	"strings"
	"testing"
)

func TestSniffBlocked(t *testing.T) {
	zipOf := func(names ...string) []byte { return buildZip(t, names...) }
	for _, tc := range []struct {
		name    string
		data    []byte
		blocked bool
	}{
		{"pe", append([]byte("MZ\x90\x00"), make([]byte, 100)...), true},
		{"csv starting MZ", []byte("MZ,Mozambique\nPT,Portugal\n"), false},
		{"elf", []byte("\x7fELF\x02\x01\x01"), true},
		{"mach-o", []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"), true},
		{"shebang", []byte("#!/bin/sh\nrm -rf /\n"), true},
		{"gzip", []byte("\x1f\x8b\x08\x00\x00\x00"), true},
		{"bzip2", []byte("BZh91AY&SY"), true},
		{"text starting BZh", []byte("BZhang was here"), false},
		{"rar", []byte("Rar!\x1a\x07\x01\x00"), true},
		{"7z", []byte("7z\xbc\xaf\x27\x1c\x00\x04"), true},
		{"tar", append(make([]byte, 257), []byte("ustar\x0000")...), true},
		{"iso", append(make([]byte, 0x8001), []byte("CD001")...), true},
		{"zip", zipOf("a.txt"), true},
		{"jar", zipOf("[Content_Types].xml", "META-INF/MANIFEST.MF"), true},
		{"apk", zipOf("AndroidManifest.xml", "classes.dex"), true},
		{"docx", zipOf("[Content_Types].xml", "word/document.xml"), false},
		{"docm", zipOf("[Content_Types].xml", "word/vbaProject.bin"), true},
		{"docx with exe", zipOf("[Content_Types].xml", "word/embeddings/x.exe"), true},
		{"odt", zipOf("mimetype", "content.xml"), false},
		{"zip posing as odt", zipOf("MimeType", "payload"), true},
		{"content types only", zipOf("[Content_Types].xml", "evil.payload"), true},
		{"pdf", []byte("%PDF-1.7\n"), false},
		{"png", []byte("\x89PNG\r\n\x1a\n"), false},
		{"text", []byte("hello"), false},
	} {
		if got := sniff(tc.data) != ""; got != tc.blocked {
			t.Errorf("%s: blocked=%v, want %v (%q)", tc.name, got, tc.blocked, sniff(tc.data))
		}
		// The send path sniffs the base64 text, decoding only what it reads.
		c, ok := ParseBase64([]byte(base64.StdEncoding.EncodeToString(tc.data)))
		if got := SniffBlockedAt(c, c.Size()); !ok || got != sniff(tc.data) {
			t.Errorf("%s: through base64 %q, directly %q", tc.name, got, sniff(tc.data))
		}
	}
	for name, blocked := range map[string]bool{"a.EXE": true, "b.tar.gz": true, "c.js": true, "d.pdf": false, "noext": false, "e.docx": false,
		// Windows strips trailing dots and spaces; ':' opens an NTFS stream.
		"a.bat.": true, "a.vbs.": true, "a.hta.": true, "a.lnk.": true, "a.ps1 .": true, "a.exe::$DATA": true,
		"a.exe:zone": true, "a.cmd. . ": true, "Meeting: notes.pdf": false, "b.pdf.": false, "...": false} {
		if got := BlockedExtension(name) != ""; got != blocked {
			t.Errorf("%s: blocked=%v", name, got)
		}
	}
}

// buildZip makes a ZIP file holding the named (tiny) entries.
func buildZip(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		content := "content of " + n
		if n == "mimetype" { // "MimeType" gets other content: a fake
			content = "application/vnd.oasis.opendocument.text"
		}
		io.WriteString(w, content)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBase64ContentMatchesDecoding: keeping content as base64 text
// (ContentText, ParseBase64, Reader, ReadAt) accepts and yields exactly
// what decoding the unquoted string did, for clean, wrapped, escaped,
// unpadded and broken content.
func TestBase64ContentMatchesDecoding(t *testing.T) {
	rnd := rand.New(rand.NewSource(2))
	mutations := []func(string) string{
		func(s string) string { return s },
		func(s string) string { return strings.TrimRight(s, "=") },
		func(s string) string { return wrap(s, 76, `\r\n`) },
		func(s string) string { return wrap(s, 60, `\n`) + `\n` },
		func(s string) string { return strings.ReplaceAll(s, "/", `\/`) },
		func(s string) string { return strings.ReplaceAll(s, "A", `\u0041`) },
		func(s string) string { return " " + s + `\t` },
		func(s string) string { return s + "=" },
		func(s string) string { return s + "A" },
		func(s string) string { return s + "AB" },
		func(s string) string { return strings.Replace(s, "A", "é", 1) },
		func(s string) string { return strings.Replace(s, "A", `\u00e9`, 1) },
		func(s string) string { return strings.Replace(s, "B", "=", 1) },
		func(s string) string { return strings.Replace(s, "C", "-", 1) },
		func(s string) string { return "====" },
		func(s string) string { return `\r\n` },
	}
	for i := 0; i < 200; i++ {
		data := make([]byte, rnd.Intn(10000))
		rnd.Read(data)
		enc := base64.StdEncoding.EncodeToString(data)
		for j, mut := range mutations {
			raw := []byte(`"` + mut(enc) + `"`)
			want, wantOK := oldDecode(raw)
			c, ok := ParseBase64(ContentText(raw))
			if ok != wantOK {
				t.Fatalf("len %d mutation %d: accepted %v, before %v", len(data), j, ok, wantOK)
			}
			if !ok {
				continue
			}
			got, err := io.ReadAll(c.Reader())
			if err != nil || !bytes.Equal(got, want) || c.Size() != int64(len(want)) {
				t.Fatalf("len %d mutation %d: decoded %d bytes (size %d, %v), want %d", len(data), j, len(got), c.Size(), err, len(want))
			}
			for _, off := range []int{0, 1, 2, 3, len(want) / 2, len(want) - 1} {
				if off < 0 || off >= len(want) {
					continue
				}
				p := make([]byte, min(5000, len(want)-off))
				if n, err := c.ReadAt(p, int64(off)); n != len(p) || err != nil || !bytes.Equal(p, want[off:off+n]) {
					t.Fatalf("len %d mutation %d: ReadAt(%d, %d) = %d, %v", len(data), j, len(p), off, n, err)
				}
			}
			if n, err := c.ReadAt(make([]byte, 10), c.Size()-3); c.Size() >= 3 && (n != 3 || err != io.EOF) {
				t.Fatalf("ReadAt past the end: %d %v", n, err)
			}
		}
	}
}

func wrap(s string, n int, eol string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + eol)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

// oldDecode is how content was decoded before it was kept as base64
// text: the JSON string unquoted, whitespace dropped, padding trimmed.
func oldDecode(raw []byte) ([]byte, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s == "" {
		return nil, false
	}
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	data, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	return data, err == nil && len(data) > 0
}

// sniff is SniffBlockedAt over bytes in memory.
func sniff(data []byte) string { return SniffBlockedAt(bytes.NewReader(data), int64(len(data))) }
