package shape

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

var fullDefaults = SenderDefaults{
	FromEmail: "news@example.org", FromName: "Example News",
	ReplyToEmail: "help@example.org", ReplyToName: "Zoë Support",
}

func TestApplyDefaults(t *testing.T) {
	body := "\r\nBody line one\r\nFrom: not a header, body text\r\n"
	cases := []struct {
		name     string
		msg      string
		d        SenderDefaults
		want     []string // byte sequences expected in the output
		sentFrom string
		same     bool // output must be the input, untouched
	}{
		{"both missing", "To: bob@example.net\r\nSubject: hi\r\n" + body, fullDefaults,
			[]string{"Subject: hi\r\nFrom: \"Example News\" <news@example.org>\r\nReply-To: =?utf-8?q?Zo=C3=AB_Support?= <help@example.org>\r\n\r\n"},
			"news@example.org", false},
		{"from present", "From: Alice <Alice@EXAMPLE.net>\r\nTo: bob@example.net\r\n" + body, fullDefaults,
			[]string{"From: Alice <Alice@EXAMPLE.net>\r\n", "Reply-To: "}, "Alice@example.net", false},
		{"both present", "From: a@example.net\r\nReply-To: r@example.net\r\n" + body, fullDefaults, nil, "a@example.net", true},
		{"blank from replaced", "From: \r\nTo: bob@example.net\r\n" + body, SenderDefaults{FromEmail: "news@example.org"},
			[]string{"To: bob@example.net\r\nFrom: <news@example.org>\r\n"}, "news@example.org", false},
		{"name without email ignored", "To: bob@example.net\r\n" + body, SenderDefaults{FromName: "Nobody", ReplyToName: "Nobody"}, nil, "", true},
		{"no defaults", "To: bob@example.net\r\n" + body, SenderDefaults{}, nil, "", true},
		{"header without body", "To: bob@example.net", SenderDefaults{FromEmail: "n@example.org"},
			[]string{"To: bob@example.net\r\nFrom: <n@example.org>\r\n"}, "n@example.org", false},
		{"no header at all", body, SenderDefaults{FromEmail: "n@example.org"}, []string{"From: <n@example.org>\r\n\r\nBody"}, "n@example.org", false},
		{"trace fields stay on top", "Received: from x\r\n\tby y\r\nTo: b@example.net\r\n" + body, SenderDefaults{FromEmail: "n@example.org"},
			[]string{"Received: from x\r\n\tby y\r\nTo: b@example.net\r\nFrom: <n@example.org>\r\n\r\n"}, "n@example.org", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, sentFrom, err := ApplyDefaults([]byte(tc.msg), tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if sentFrom != tc.sentFrom {
				t.Errorf("sentFrom = %q, want %q", sentFrom, tc.sentFrom)
			}
			if tc.same && string(out) != tc.msg {
				t.Fatalf("message changed:\n%s", out)
			}
			for _, w := range tc.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
			if strings.HasSuffix(tc.msg, body) && !bytes.HasSuffix(out, []byte(body)) {
				t.Error("body changed")
			}
			froms := 0
			for _, f := range scanHeader(out).fields {
				if f.key == "From" {
					froms++
				}
			}
			if tc.sentFrom != "" && froms != 1 {
				t.Errorf("%d From fields in the header, want 1", froms)
			}
		})
	}
}

func TestApplyDefaultsLF(t *testing.T) {
	out, _, err := ApplyDefaults([]byte("To: b@example.net\nSubject: x\n\nbody\n"), fullDefaults)
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: x\nFrom: \"Example News\" <news@example.org>\nReply-To: =?utf-8?q?Zo=C3=AB_Support?= <help@example.org>\n\nbody\n"
	if bytes.Contains(out, []byte("\r")) || !bytes.HasSuffix(out, []byte(want)) {
		t.Fatalf("LF message got mixed or misplaced fields:\n%q", out)
	}
}

func TestApplyDefaultsLongEncodedName(t *testing.T) {
	name := strings.Repeat("Grüße aus Köln ", 8)
	out, _, err := ApplyDefaults([]byte("To: b@example.net\r\n\r\nbody"), SenderDefaults{FromEmail: "k@example.org", FromName: name})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\r\n") {
		if len(line) > 78 {
			t.Errorf("header line of %d octets: %q", len(line), line)
		}
	}
	h, _, err := parseHeader(out)
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.AddressList("From")
	if err != nil || len(list) != 1 || list[0].Name != strings.TrimSpace(name) || list[0].Address != "k@example.org" {
		t.Fatalf("From does not decode back: %v %+v", err, list)
	}
}

func TestApplyDefaultsErrors(t *testing.T) {
	msg := []byte("To: b@example.net\r\n\r\nbody")
	for _, d := range []SenderDefaults{
		{FromEmail: "x@example.org\r\nBcc: victim@example.net"},
		{FromEmail: "Name <x@example.org>"},
		{FromEmail: "x@example.org", FromName: "evil\r\nBcc: victim@example.net"},
		{ReplyToEmail: "not an address"},
	} {
		out, _, err := ApplyDefaults(msg, d)
		if !errors.Is(err, ErrBadAddress) || !bytes.Equal(out, msg) {
			t.Errorf("%+v: err=%v", d, err)
		}
	}
	bad := []byte(" leading space is not a header\r\n\r\nbody")
	if out, _, err := ApplyDefaults(bad, fullDefaults); err == nil || !bytes.Equal(out, bad) {
		t.Errorf("malformed header: err=%v", err)
	}
}

func TestFromAddress(t *testing.T) {
	for msg, want := range map[string]string{
		"From: Alice <Alice@Example.ORG>\r\n\r\n":        "Alice@example.org",
		"From: a@b.example, c@d.example\r\n\r\n":         "a@b.example",
		"From: =?x-bogus?q?X?= <x@y.example>\r\n\r\n":    "x@y.example",
		"To: a@b.example\r\n\r\n":                        "",
		"From: <<<garbage\r\n\r\n":                       "",
		"Subject: x\r\nFROM: shout@caps.example\r\n\r\n": "shout@caps.example",
	} {
		if got, err := FromAddress([]byte(msg)); err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", msg, got, err, want)
		}
	}
}
