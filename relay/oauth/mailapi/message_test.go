package mailapi

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

const sendAs = "owner@mail.test"

// body has a dot line, a blank line and no final newline oddities: it
// must come out byte for byte.
const body = "Hello\r\n.dot line\r\n\r\nFrom: not a header\r\nend\r\n"

func TestPrepare(t *testing.T) {
	tests := []struct {
		name   string
		header string // input header, without the blank line
		rcpts  []string
		want   string // expected header, without the blank line
	}{
		{name: "display name kept",
			header: "From: \"Alice Smith\" <alice@app.test>\r\nTo: bob@x.test\r\nSubject: hi\r\n",
			rcpts:  []string{"bob@x.test"},
			want:   "From: \"Alice Smith\" <owner@mail.test>\r\nTo: bob@x.test\r\nSubject: hi\r\n"},
		{name: "bare address",
			header: "Subject: hi\r\nFrom: alice@app.test\r\nTo: bob@x.test\r\n",
			rcpts:  []string{"bob@x.test"},
			want:   "Subject: hi\r\nFrom: owner@mail.test\r\nTo: bob@x.test\r\n"},
		{name: "angle address without name",
			header: "From: <alice@app.test>\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "From: owner@mail.test\r\nTo: bob@x.test\r\n"},
		{name: "encoded name in an unknown charset kept as written",
			header: "From: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <a@app.test>\r\nTo: bob@x.test\r\n",
			rcpts:  []string{"bob@x.test"},
			want:   "From: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <owner@mail.test>\r\nTo: bob@x.test\r\n"},
		{name: "name in a comment",
			header: "From: alice@app.test (Alice)\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "From: \"Alice\" <owner@mail.test>\r\nTo: bob@x.test\r\n"},
		{name: "folded From",
			header: "From: \"Alice\"\r\n <alice@app.test>\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "From: \"Alice\" <owner@mail.test>\r\nTo: bob@x.test\r\n"},
		{name: "already the account: untouched",
			header: "From:   Owner  <OWNER@mail.test>\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "From:   Owner  <OWNER@mail.test>\r\nTo: bob@x.test\r\n"},
		{name: "unparseable From",
			header: "From: Alice <<broken\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "From: owner@mail.test\r\nTo: bob@x.test\r\n"},
		{name: "missing From added, Sender and extra From dropped",
			header: "Sender: list@app.test\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "To: bob@x.test\r\nFrom: owner@mail.test\r\n"},
		{name: "second From dropped",
			header: "From: A <a@app.test>\r\nFrom: B <b@app.test>\r\nTo: bob@x.test\r\n", rcpts: []string{"bob@x.test"},
			want: "From: A <owner@mail.test>\r\nTo: bob@x.test\r\n"},
		{name: "envelope-only recipients go to Bcc",
			header: "From: a@app.test\r\nTo: Bob <bob@x.test>\r\nCc: carol@x.test\r\n",
			rcpts:  []string{"bob@x.test", "carol@x.test", "dave@y.test"},
			want:   "From: owner@mail.test\r\nTo: Bob <bob@x.test>\r\nCc: carol@x.test\r\nBcc: dave@y.test\r\n"},
		{name: "existing Bcc replaced",
			header: "From: a@app.test\r\nTo: bob@x.test\r\nBcc: eve@x.test, dave@y.test\r\n",
			rcpts:  []string{"bob@x.test", "dave@y.test"},
			want:   "From: owner@mail.test\r\nTo: bob@x.test\r\nBcc: dave@y.test\r\n"},
		{name: "retry with part of the recipients",
			header: "From: a@app.test\r\nTo: Bob <bob@x.test>, \"Carol C\" <carol@x.test>\r\nCc: zed@x.test\r\n",
			rcpts:  []string{"carol@x.test"},
			want:   "From: owner@mail.test\r\nTo: \"Carol C\" <carol@x.test>\r\n"},
		{name: "list address not in the envelope",
			header: "From: a@app.test\r\nTo: team@list.test\r\n", rcpts: []string{"m1@x.test", "m2@x.test"},
			want: "From: owner@mail.test\r\nBcc: m1@x.test, m2@x.test\r\n"},
		{name: "undisclosed recipients",
			header: "From: a@app.test\r\nTo: undisclosed-recipients:;\r\n", rcpts: []string{"m1@x.test", "M1@x.test"},
			want: "From: owner@mail.test\r\nTo: undisclosed-recipients:;\r\nBcc: m1@x.test\r\n"},
		{name: "addresses compared without case",
			header: "From: a@app.test\r\nTo: Bob@X.TEST\r\n", rcpts: []string{"bob@x.test"},
			want: "From: owner@mail.test\r\nTo: Bob@X.TEST\r\n"},
		{name: "bare LF message keeps LF",
			header: "From: A <a@app.test>\nTo: bob@x.test\n", rcpts: []string{"bob@x.test", "c@x.test"},
			want: "From: A <owner@mail.test>\nTo: bob@x.test\nBcc: c@x.test\n"},
		{name: "unparseable To dropped, recipients to Bcc",
			header: "From: a@app.test\r\nTo: bob@@x\r\n", rcpts: []string{"bob@x.test"},
			want: "From: owner@mail.test\r\nBcc: bob@x.test\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eol := "\r\n"
			if !strings.Contains(tt.header, "\r") {
				eol = "\n"
			}
			out, err := Prepare([]byte(tt.header+eol+body), sendAs, tt.rcpts)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if want := tt.want + eol + body; string(out) != want {
				t.Fatalf("got\n%q\nwant\n%q", out, want)
			}
		})
	}
}

func TestPrepareFoldsLongBcc(t *testing.T) {
	var rcpts []string
	for i := 0; i < 40; i++ {
		rcpts = append(rcpts, "recipient"+strings.Repeat("x", i%7)+strconv.Itoa(i)+"@example.test")
	}
	out, err := Prepare([]byte("From: a@app.test\r\n\r\n"), sendAs, rcpts)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := splitHeader(out)
	bcc := string(h.fields[len(h.fields)-1].raw)
	for _, line := range strings.Split(strings.TrimSuffix(bcc, "\r\n"), "\r\n") {
		if len(line) > 78 {
			t.Fatalf("line of %d chars: %q", len(line), line)
		}
	}
	list, err := lenient.ParseList(h.fields[len(h.fields)-1].value())
	if err != nil || len(list) != 40 {
		t.Fatalf("folded Bcc parses to %d addresses (%v)", len(list), err)
	}
}

func TestPrepareEdges(t *testing.T) {
	if _, err := Prepare([]byte("From: a@b.c\r\n\r\nx"), "Owner <owner@mail.test>", []string{"b@c.d"}); err == nil {
		t.Error("accepted a sending address with a name")
	}
	if _, err := Prepare([]byte("From: a@b.c\r\n\r\nx"), sendAs, nil); err == nil {
		t.Error("accepted no recipients")
	}
	// A message without a body: all header, last line unterminated.
	out, err := Prepare([]byte("From: a@b.c\r\nSubject: x"), sendAs, []string{"b@c.d"})
	if err != nil || string(out) != "From: owner@mail.test\r\nSubject: x\r\nBcc: b@c.d\r\n\r\n" {
		t.Fatalf("header-only message: %q, %v", out, err)
	}
}

// FuzzPrepare checks, for any input, that Prepare never fails on a valid
// account and envelope, never changes the body, always sends as the
// account, and is idempotent (a retry prepares the same bytes again).
func FuzzPrepare(f *testing.F) {
	f.Add([]byte("From: \"A\" <a@b.c>\r\nTo: x@y.z\r\n\r\nbody\r\n"), "x@y.z")
	f.Add([]byte("From: a@b.c (c)\nCc: g: x@y.z;\n\nbody"), "q@y.z")
	f.Add([]byte(" leading\r\nTo:\r\n\r\n"), "x@y.z")
	f.Add([]byte("From: =?utf-8?q?=C3=A9?= <a@b.c>\r\nBcc: x@y.z\r\n"), "X@Y.Z")
	f.Fuzz(func(t *testing.T, msg []byte, rcpt string) {
		if !strings.Contains(rcpt, "@") || strings.ContainsAny(rcpt, " \t\r\n,<>()\"\\:;[]") {
			return
		}
		out, err := Prepare(msg, sendAs, []string{rcpt})
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		_, inBody := splitHeader(msg)
		if !bytes.HasSuffix(out, inBody) {
			t.Fatalf("body changed: %q → %q", msg, out)
		}
		h, _ := splitHeader(out)
		froms := 0
		for _, f := range h.fields {
			if f.name == "from" {
				froms++
				if list, err := lenient.ParseList(f.value()); err != nil || len(list) != 1 || !strings.EqualFold(list[0].Address, sendAs) {
					t.Fatalf("From %q does not send as the account", f.raw)
				}
			}
		}
		if froms != 1 {
			t.Fatalf("%d From fields in %q", froms, out)
		}
		again, err := Prepare(out, sendAs, []string{rcpt})
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
	})
}
