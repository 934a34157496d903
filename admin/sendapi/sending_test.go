package sendapi

import "testing"

// A mailbox password's HTTP sends compare the sender with the mailbox
// under ASCII case folding only (hostile-tenant audit of issue 12): the
// local part may be UTF-8 to net/mail, and Unicode folding takes U+017F
// and U+212A for "s" and "k".
func TestSameMailboxASCIIFold(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"sk@allowed.com", true}, {"SK@Allowed.COM", true},
		{"\u017fk@allowed.com", false}, {"s\u212a@allowed.com", false}, {"sk@allowed.co", false},
	} {
		if got := sameMailbox(c.addr, "sk@allowed.com"); got != c.ok {
			t.Errorf("sameMailbox(%q) = %v, want %v", c.addr, got, c.ok)
		}
	}
}
