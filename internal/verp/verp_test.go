package verp

import (
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	s := New(Key("secret"))
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	addr := s.Address("eml_06h4yfq9fr001gbs3zhn9mje", 2, now.Add(30*24*time.Hour), "bounces.example.com")
	if local := addr[:strings.IndexByte(addr, '@')]; len(local) > 64 {
		t.Fatalf("local part %q is %d octets, over 64", local, len(local))
	}
	id, rcpt, err := s.Parse(strings.ToUpper(addr), now) // case-folded on the way back
	if err != nil || id != "eml_06h4yfq9fr001gbs3zhn9mje" || rcpt != 2 {
		t.Fatalf("Parse = %q %d %v", id, rcpt, err)
	}
	all := s.Token("eml_06h4yfq9fr001gbs3zhn9mje", AllRecipients, now.Add(time.Hour))
	if _, rcpt, err := s.Parse(Prefix+all, now); err != nil || rcpt != AllRecipients {
		t.Fatalf("all recipients: %d %v", rcpt, err)
	}
}

// TestTokenRefusals is the hostile side: a token of another key, one
// whose message, recipient or expiry was edited, an expired one and
// plain garbage are all refused.
func TestTokenRefusals(t *testing.T) {
	s := New(Key("secret"))
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	tok := s.Token("eml_06h4yfq9fr001gbs3zhn9mje", 0, now.Add(2*time.Hour))
	parts := strings.Split(tok, "-")
	edit := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return Prefix + strings.Join(p, "-")
	}
	cases := map[string]error{
		Prefix + New(Key("other")).Token("eml_06h4yfq9fr001gbs3zhn9mje", 0, now.Add(2*time.Hour)): ErrBadMAC,
		edit(0, "06h4yfq9fr001gbs3zhn9mjf"): ErrBadMAC, // another message
		edit(1, "1"):                        ErrBadMAC, // another recipient
		edit(1, "x"):                        ErrBadMAC, // widened to all recipients
		edit(2, "zzzzzz"):                   ErrBadMAC, // expiry pushed out
		"b+":                                ErrMalformed,
		"bounce@example.com":                ErrMalformed,
		"b+a-b-c-d-e":                       ErrMalformed,
		"b+" + strings.Repeat("a", 100):     ErrMalformed,
		"b+../-0-1-aaaaaaaaaaaaaaaa":        ErrMalformed,
	}
	for addr, want := range cases {
		if _, _, err := s.Parse(addr, now); err != want {
			t.Errorf("Parse(%q) = %v, want %v", addr, err, want)
		}
	}
	if _, _, err := s.Parse(Prefix+tok, now.Add(3*time.Hour)); err != ErrExpired {
		t.Errorf("expired token: %v", err)
	}
}
