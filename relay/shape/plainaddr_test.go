package shape

import (
	"math/rand/v2"
	netmail "net/mail"
	"strings"
	"testing"
)

// TestPlainAddressMatchesNetMail: whatever plainAddress takes, net/mail's
// ParseAddressList (what fromAddress asked before) parses to the same one
// address; random strings over the characters that matter, and random
// plain forms so that most are taken.
func TestPlainAddressMatchesNetMail(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 19))
	pieces := []string{"a", "B", "x1", ".", "@", "<", ">", " ", "\t", "=", "?", `"`, "(", ")", ",", ":", ";",
		"[", "]", `\`, "é", "-", "+", "_", "'", "..", "=?utf-8?q?x?=", "\x00", "\x7f", "~"}
	atom := func() string {
		var b strings.Builder
		for range 1 + r.IntN(3) {
			b.WriteString([]string{"a", "Bob", "x.y", "1", "-", "+tag", "o'n", "~", "_"}[r.IntN(9)])
		}
		return b.String()
	}
	taken := 0
	check := func(v string) {
		a, ok := plainAddress(v)
		if !ok {
			return
		}
		taken++
		list, err := netmail.ParseAddressList(v)
		if err != nil || len(list) != 1 || list[0].Address != a {
			t.Fatalf("plainAddress(%q) = %q; net/mail: %v, %v", v, a, list, err)
		}
	}
	for range 100000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		check(strings.TrimSpace(b.String()))

		addr := atom() + "@" + atom()
		switch r.IntN(4) {
		case 0:
			check(addr)
		case 1:
			check("<" + addr + ">")
		case 2:
			check(atom() + " " + atom() + []string{"", " ", "\t", "  "}[r.IntN(4)] + "<" + addr + ">")
		case 3:
			check(pieces[r.IntN(len(pieces))] + atom() + " <" + addr + ">")
		}
	}
	if taken < 50000 {
		t.Fatalf("only %d forms taken: the comparison covers too little", taken)
	}
	for _, v := range []string{"a@example.com", "<a@example.com>", "Ann Example <a@Example.COM>", "a.b+c@d.e"} {
		if _, ok := plainAddress(v); !ok {
			t.Errorf("plainAddress(%q) not taken", v)
		}
	}
	for _, v := range []string{`"A" <a@b>`, "=?utf-8?q?A?= <a@b>", "a@b, c@d", "a@b (c)", "a..b@c", "<a@b", "a@[1.2.3.4]", "é <a@b>"} {
		if _, ok := plainAddress(v); ok {
			t.Errorf("plainAddress(%q) taken: net/mail's to parse", v)
		}
	}
}

// TestFromAddressPlainAllocations: a plain From allocates at most the
// lower-cased domain's string.
func TestFromAddressPlainAllocations(t *testing.T) {
	if a := testing.AllocsPerRun(100, func() { fromAddress("Ann Example <ann@example.com>") }); a > 1 {
		t.Errorf("fromAddress: %v allocations, want at most 1", a)
	}
}
